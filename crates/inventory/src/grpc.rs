//! gRPC `Gear`: what other services ask inventory synchronously (training checks that a
//! workout's gear belongs to its owner).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use stride_proto::inventory::v1::{
    GearInfo, GetGearRequest,
    gear_server::{Gear, GearServer},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::Inventory;

/// The gRPC routes of inventory.
pub fn routes(inventory: Inventory) -> axum::Router {
    stride_platform::service::grpc_router(GearServer::new(inventory))
}

#[tonic::async_trait]
impl Gear for Inventory {
    async fn get_gear(
        &self,
        request: Request<GetGearRequest>,
    ) -> Result<Response<GearInfo>, Status> {
        let id = Uuid::from_str(&request.into_inner().gear_id)
            .map_err(|_| Status::invalid_argument("gear_id must be a UUID"))?;
        let row: Option<(Uuid, String, Option<DateTime<Utc>>)> =
            sqlx::query_as("SELECT owner_id, kind, retired_at FROM gear WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db)
                .await
                .map_err(|error| {
                    tracing::error!(%error, "gear query failed");
                    Status::unavailable("inventory's database is unavailable")
                })?;
        let (owner, kind, retired_at) = row.ok_or_else(|| Status::not_found("no such gear"))?;
        Ok(Response::new(GearInfo {
            gear_id: id.to_string(),
            owner_id: owner.to_string(),
            kind,
            retired: retired_at.is_some(),
        }))
    }
}
