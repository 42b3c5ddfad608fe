//! Device credentials, checked by the services that take device traffic (telemetry).
//!
//! A device token is resolved by identity's gRPC `AuthenticateDevice` and the answer — positive
//! or negative — is cached in process for `STRIDE_DEVICE_AUTH_CACHE_SECONDS`, renewed in the
//! background once it is half that old ([`crate::short_cache`]). So ingest costs no call to
//! identity per request, a device that keeps sending never waits for one, and a revoked device
//! is refused at the latest that many seconds after its revocation.

use std::time::Duration;

use sha2::{Digest, Sha256};
use stride_proto::identity::v1::{
    AuthenticateDeviceRequest, user_directory_client::UserDirectoryClient,
};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{error::ApiError, short_cache::ShortCache};

/// An authenticated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device.
    pub device_id: Uuid,
    /// Its owner.
    pub user_id: Uuid,
    /// Its kind (`watch`, `bike_computer`, ...).
    pub kind: String,
}

/// Resolves device tokens with a short-lived cache.
#[derive(Debug)]
pub struct DeviceAuthenticator {
    identity: UserDirectoryClient<Channel>,
    /// Answers (`None` for an unknown or revoked token) keyed by the SHA-256 of the token.
    cache: ShortCache<[u8; 32], Option<Device>>,
}

impl DeviceAuthenticator {
    /// A resolver asking `identity`, caching answers for `ttl`.
    pub fn new(identity: UserDirectoryClient<Channel>, ttl: Duration) -> Self {
        Self {
            identity,
            cache: ShortCache::new(ttl),
        }
    }

    /// The device a token belongs to; 401 when unknown or revoked, 503 when identity cannot
    /// be asked.
    pub async fn authenticate(&self, token: &str) -> Result<Device, ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let identity = self.identity.clone();
        let token = token.to_owned();
        let answer = self
            .cache
            .get(digest, move || ask_identity(identity, token))
            .await?;
        answer.ok_or_else(|| ApiError::unauthorized("unknown or revoked device credential"))
    }
}

/// Identity's answer for `token`: `None` when it is unknown or revoked.
async fn ask_identity(
    mut identity: UserDirectoryClient<Channel>,
    token: String,
) -> Result<Option<Device>, ApiError> {
    match identity
        .authenticate_device(AuthenticateDeviceRequest { token })
        .await
    {
        Ok(response) => {
            let response = response.into_inner();
            let parse = |value: &str| Uuid::parse_str(value).map_err(ApiError::internal);
            Ok(Some(Device {
                device_id: parse(&response.device_id)?,
                user_id: parse(&response.user_id)?,
                kind: response.kind,
            }))
        }
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::NotFound | tonic::Code::Unauthenticated
            ) =>
        {
            Ok(None)
        }
        Err(status) => Err(ApiError::unavailable(
            anyhow::anyhow!("identity: {status}"),
            2,
        )),
    }
}
