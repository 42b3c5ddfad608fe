//! Device credentials, checked by the services that take device traffic (telemetry).
//!
//! A device token is resolved by identity's gRPC `AuthenticateDevice` and the answer — positive
//! or negative — is cached in process for `STRIDE_DEVICE_AUTH_CACHE_SECONDS`. So ingest costs no
//! call to identity per request, and a revoked device is refused at the latest that many
//! seconds after its revocation.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use stride_proto::identity::v1::{
    AuthenticateDeviceRequest, user_directory_client::UserDirectoryClient,
};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::error::ApiError;

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

/// Entries above which expired ones are pruned.
const PRUNE_ABOVE: usize = 100_000;

/// A cached answer: the device (or `None` for an unknown or revoked token) and when it was
/// fetched, keyed by the SHA-256 of the token.
type AnswerCache = HashMap<[u8; 32], (Option<Device>, Instant)>;

/// Resolves device tokens with a short-lived cache.
#[derive(Debug)]
pub struct DeviceAuthenticator {
    identity: UserDirectoryClient<Channel>,
    ttl: Duration,
    cache: Mutex<AnswerCache>,
}

impl DeviceAuthenticator {
    /// A resolver asking `identity`, caching answers for `ttl`.
    pub fn new(identity: UserDirectoryClient<Channel>, ttl: Duration) -> Self {
        Self {
            identity,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The device a token belongs to; 401 when unknown or revoked, 503 when identity cannot
    /// be asked.
    pub async fn authenticate(&self, token: &str) -> Result<Device, ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((answer, at)) = self.cache.lock().await.get(&digest)
            && at.elapsed() < self.ttl
        {
            return answer
                .clone()
                .ok_or_else(|| ApiError::unauthorized("unknown or revoked device credential"));
        }
        let mut identity = self.identity.clone();
        let answer = match identity
            .authenticate_device(AuthenticateDeviceRequest {
                token: token.to_owned(),
            })
            .await
        {
            Ok(response) => {
                let response = response.into_inner();
                let parse = |value: &str| Uuid::parse_str(value).map_err(ApiError::internal);
                Some(Device {
                    device_id: parse(&response.device_id)?,
                    user_id: parse(&response.user_id)?,
                    kind: response.kind,
                })
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::NotFound | tonic::Code::Unauthenticated
                ) =>
            {
                None
            }
            Err(status) => {
                return Err(ApiError::unavailable(
                    anyhow::anyhow!("identity: {status}"),
                    2,
                ));
            }
        };
        let mut cache = self.cache.lock().await;
        if cache.len() > PRUNE_ABOVE {
            let ttl = self.ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        cache.insert(digest, (answer.clone(), Instant::now()));
        answer.ok_or_else(|| ApiError::unauthorized("unknown or revoked device credential"))
    }
}
