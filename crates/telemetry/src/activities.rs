//! Training's answers about activities, cached for a moment: ingest asks for every batch, and
//! a finished activity must be refused within seconds, not minutes.

use std::time::Duration;

use stride_platform::{error::ApiError, short_cache::ShortCache};
use stride_proto::training::v1::{
    ActivityInfo, GetActivityRequest, activities_client::ActivitiesClient,
};
use tonic::transport::Channel;
use uuid::Uuid;

/// Cached answers of `Activities.GetActivity`, renewed in the background once half their life
/// is gone, so a device that keeps sending never waits for training.
#[derive(Debug)]
pub struct ActivityCache {
    client: ActivitiesClient<Channel>,
    cache: ShortCache<Uuid, Option<ActivityInfo>>,
}

impl ActivityCache {
    /// A cache over `client`, keeping answers for `ttl`.
    pub fn new(client: ActivitiesClient<Channel>, ttl: Duration) -> Self {
        Self {
            client,
            cache: ShortCache::new(ttl),
        }
    }

    /// The activity, `None` when it does not exist; 503 when training cannot be asked.
    pub async fn get(&self, id: Uuid) -> Result<Option<ActivityInfo>, ApiError> {
        let client = self.client.clone();
        self.cache.get(id, move || ask_training(client, id)).await
    }
}

/// Training's answer about activity `id`: `None` when it does not exist.
async fn ask_training(
    mut client: ActivitiesClient<Channel>,
    id: Uuid,
) -> Result<Option<ActivityInfo>, ApiError> {
    match client
        .get_activity(GetActivityRequest {
            activity_id: id.to_string(),
        })
        .await
    {
        Ok(response) => Ok(Some(response.into_inner())),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(ApiError::unavailable(
            anyhow::anyhow!("training: {status}"),
            2,
        )),
    }
}
