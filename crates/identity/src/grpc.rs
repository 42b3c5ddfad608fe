//! gRPC `UserDirectory`: what other services ask identity synchronously.

use std::str::FromStr;

use stride_proto::identity::v1::{
    AuthenticateDeviceRequest, AuthenticateDeviceResponse, CheckSessionRequest,
    CheckSessionResponse, GetProfilesRequest, GetProfilesResponse, Profile,
    user_directory_server::{UserDirectory, UserDirectoryServer},
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{Identity, sessions::digest};

#[derive(sqlx::FromRow)]
struct ProfileRow {
    id: Uuid,
    display_name: String,
    avatar_id: Option<Uuid>,
    time_zone: String,
    default_visibility: String,
    max_heart_rate: Option<i32>,
    resting_heart_rate: Option<i32>,
    weight_kg: Option<f64>,
    birth_year: Option<i32>,
}

/// Most ids per `GetProfiles` call.
const MAX_PROFILE_IDS: usize = 500;

/// The gRPC routes of identity.
pub fn routes(identity: Identity) -> axum::Router {
    stride_platform::service::grpc_router(UserDirectoryServer::new(identity))
}

fn internal(error: sqlx::Error) -> Status {
    tracing::error!(%error, "user directory query failed");
    Status::unavailable("identity's database is unavailable")
}

#[tonic::async_trait]
impl UserDirectory for Identity {
    async fn get_profiles(
        &self,
        request: Request<GetProfilesRequest>,
    ) -> Result<Response<GetProfilesResponse>, Status> {
        let ids = request.into_inner().user_ids;
        if ids.len() > MAX_PROFILE_IDS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_PROFILE_IDS} ids per call"
            )));
        }
        let ids: Vec<Uuid> = ids
            .iter()
            .map(|id| Uuid::from_str(id))
            .collect::<Result<_, _>>()
            .map_err(|_| Status::invalid_argument("user_ids must be UUIDs"))?;
        let rows: Vec<ProfileRow> = sqlx::query_as(
            "SELECT id, display_name, avatar_id, time_zone, default_visibility, max_heart_rate,
                    resting_heart_rate, weight_kg, birth_year
             FROM users WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&self.db)
        .await
        .map_err(internal)?;
        let profiles = rows
            .into_iter()
            .map(|row| Profile {
                user_id: row.id.to_string(),
                display_name: row.display_name,
                avatar_id: row.avatar_id.map(|id| id.to_string()).unwrap_or_default(),
                time_zone: row.time_zone,
                default_visibility: row.default_visibility,
                max_heart_rate: row.max_heart_rate.map(f64::from),
                resting_heart_rate: row.resting_heart_rate.map(f64::from),
                weight_kg: row.weight_kg,
                birth_year: row.birth_year,
            })
            .collect();
        Ok(Response::new(GetProfilesResponse { profiles }))
    }

    async fn check_session(
        &self,
        request: Request<CheckSessionRequest>,
    ) -> Result<Response<CheckSessionResponse>, Status> {
        let session_id = Uuid::from_str(&request.into_inner().session_id)
            .map_err(|_| Status::invalid_argument("session_id must be a UUID"))?;
        let user = self
            .sessions
            .is_active(session_id)
            .await
            .map_err(internal)?;
        Ok(Response::new(CheckSessionResponse {
            active: user.is_some(),
            user_id: user.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn authenticate_device(
        &self,
        request: Request<AuthenticateDeviceRequest>,
    ) -> Result<Response<AuthenticateDeviceResponse>, Status> {
        let token = request.into_inner().token;
        let row: Option<(Uuid, Uuid, String)> = sqlx::query_as(
            "SELECT d.id, d.user_id, d.kind FROM devices d JOIN users u ON u.id = d.user_id
             WHERE d.token_hash = $1 AND d.revoked_at IS NULL AND u.disabled_at IS NULL",
        )
        .bind(digest(&token))
        .fetch_optional(&self.db)
        .await
        .map_err(internal)?;
        let (device_id, user_id, kind) =
            row.ok_or_else(|| Status::unauthenticated("unknown or revoked device credential"))?;
        Ok(Response::new(AuthenticateDeviceResponse {
            device_id: device_id.to_string(),
            user_id: user_id.to_string(),
            kind,
        }))
    }
}
