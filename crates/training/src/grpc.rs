//! gRPC `Activities`: what other services ask training synchronously.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use stride_proto::training::v1::{
    ActivityInfo, ActivitySummaryItem, GetActivityRequest, ListSummariesRequest,
    ListSummariesResponse,
    activities_server::{Activities, ActivitiesServer},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    Training,
    store::{self, ActivityRow, COLUMNS},
};

/// Most summaries per `ListSummaries` call.
const MAX_SUMMARIES: u32 = 1000;

/// The gRPC routes of training.
pub fn routes(training: Training) -> axum::Router {
    stride_platform::service::grpc_router(ActivitiesServer::new(training))
}

fn unavailable(error: sqlx::Error) -> Status {
    tracing::error!(%error, "activities query failed");
    Status::unavailable("training's database is unavailable")
}

fn time(value: Option<DateTime<Utc>>) -> String {
    value
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn info(row: &ActivityRow) -> ActivityInfo {
    ActivityInfo {
        activity_id: row.id.to_string(),
        owner_id: row.owner_id.to_string(),
        status: row.status.clone(),
        visibility: row.visibility.clone(),
        sport: row.sport.clone(),
        start_time: time(row.start_time),
        end_time: time(row.end_time),
        device_id: row.device_id.map(|id| id.to_string()).unwrap_or_default(),
        source: row.source.clone(),
    }
}

fn bound(value: &str, name: &str) -> Result<Option<DateTime<Utc>>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(value)
        .map(|at| Some(at.with_timezone(&Utc)))
        .map_err(|_| Status::invalid_argument(format!("{name} must be RFC 3339")))
}

#[tonic::async_trait]
impl Activities for Training {
    async fn get_activity(
        &self,
        request: Request<GetActivityRequest>,
    ) -> Result<Response<ActivityInfo>, Status> {
        let id = Uuid::from_str(&request.into_inner().activity_id)
            .map_err(|_| Status::invalid_argument("activity_id must be a UUID"))?;
        let mut connection = self.db.acquire().await.map_err(unavailable)?;
        let row = store::activity(&mut connection, id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found("no such activity"))?;
        Ok(Response::new(info(&row)))
    }

    async fn list_summaries(
        &self,
        request: Request<ListSummariesRequest>,
    ) -> Result<Response<ListSummariesResponse>, Status> {
        let request = request.into_inner();
        let user = Uuid::from_str(&request.user_id)
            .map_err(|_| Status::invalid_argument("user_id must be a UUID"))?;
        let from = bound(&request.from, "from")?;
        let to = bound(&request.to, "to")?;
        let limit = match request.limit {
            0 => MAX_SUMMARIES,
            limit => limit.min(MAX_SUMMARIES),
        };
        let rows: Vec<ActivityRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM activities
             WHERE owner_id = $1 AND status = 'finished'
               AND ($2::timestamptz IS NULL OR start_time >= $2)
               AND ($3::timestamptz IS NULL OR start_time < $3)
             ORDER BY start_time, id LIMIT $4"
        ))
        .bind(user)
        .bind(from)
        .bind(to)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await
        .map_err(unavailable)?;
        let items = rows
            .iter()
            .map(|row| ActivitySummaryItem {
                activity: Some(info(row)),
                summary_json: serde_json::to_string(&row.summary.0).unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(ListSummariesResponse { items }))
    }
}
