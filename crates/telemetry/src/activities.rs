//! Training's answers about activities, cached for a moment: ingest asks for every batch, and
//! a finished activity must be refused within seconds, not minutes.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use stride_platform::error::ApiError;
use stride_proto::training::v1::{
    ActivityInfo, GetActivityRequest, activities_client::ActivitiesClient,
};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use uuid::Uuid;

/// Cached answers of `Activities.GetActivity`.
#[derive(Debug)]
pub struct ActivityCache {
    client: ActivitiesClient<Channel>,
    ttl: Duration,
    cache: Mutex<HashMap<Uuid, (Option<ActivityInfo>, Instant)>>,
}

impl ActivityCache {
    /// A cache over `client`, keeping answers for `ttl`.
    pub fn new(client: ActivitiesClient<Channel>, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The activity, `None` when it does not exist; 503 when training cannot be asked.
    pub async fn get(&self, id: Uuid) -> Result<Option<ActivityInfo>, ApiError> {
        if let Some((answer, at)) = self.cache.lock().await.get(&id)
            && at.elapsed() < self.ttl
        {
            return Ok(answer.clone());
        }
        let mut client = self.client.clone();
        let answer = match client
            .get_activity(GetActivityRequest {
                activity_id: id.to_string(),
            })
            .await
        {
            Ok(response) => Some(response.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => {
                return Err(ApiError::unavailable(
                    anyhow::anyhow!("training: {status}"),
                    2,
                ));
            }
        };
        let mut cache = self.cache.lock().await;
        if cache.len() > 100_000 {
            let ttl = self.ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        cache.insert(id, (answer.clone(), Instant::now()));
        Ok(answer)
    }
}
