//! HTTP helpers every service uses: extractors whose rejections are problem+json, the
//! client's address behind trusted proxies, and opaque pagination cursors.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// `axum::Json` whose rejections are problem+json.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejections are problem+json.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` whose rejections are problem+json.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// The networks whose `X-Forwarded-For` is believed (the gateway).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Arc<Vec<IpNet>>);

impl TrustedProxies {
    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
    /// address in `X-Forwarded-For` that is not itself a trusted proxy. Taking the right-most
    /// untrusted entry means a client cannot choose its address by sending its own header.
    pub fn client_address(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let Some(forwarded_for) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for entry in forwarded_for.rsplit(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(address) => {
                    client = address;
                    if !self.trusts(address) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

/// The address of the client that sent the request (see [`TrustedProxies::client_address`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("server runs without connect info"))
            })?;
        let proxies = parts
            .extensions
            .get::<TrustedProxies>()
            .cloned()
            .unwrap_or_default();
        let forwarded_for = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok());
        Ok(ClientIp(proxies.client_address(peer, forwarded_for)))
    }
}

/// Query parameters of a paginated list: `?cursor=&limit=`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

impl PageParams {
    /// The page size, checked.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(20),
            Some(limit @ 1..=100) => Ok(i64::from(limit)),
            Some(_) => Err(ApiError::validation("limit must be between 1 and 100")),
        }
    }

    /// The decoded cursor, if any.
    pub fn cursor<T: for<'de> Deserialize<'de>>(&self) -> Result<Option<T>, ApiError> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

/// Encodes a position in a list as an opaque cursor.
pub fn encode_cursor<T: Serialize>(position: &T) -> String {
    // Serialising plain keys (ids, timestamps) cannot fail.
    let json = serde_json::to_vec(position).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a cursor made by [`encode_cursor`].
pub fn decode_cursor<T: for<'de> Deserialize<'de>>(cursor: &str) -> Result<T, ApiError> {
    let invalid = || ApiError::validation("cursor is not one this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// The request's `Idempotency-Key`, checked: printable ASCII, 1 to 255 characters.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::validation("Idempotency-Key must be printable ASCII"))?
        .trim();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::validation(
            "Idempotency-Key must have 1 to 255 characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// For PATCH bodies: distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`). Use with `#[serde(default, deserialize_with = "double_option")]`.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies(Arc::new(vec!["127.0.0.1/32".parse().expect("cidr")]))
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(proxies().client_address(peer, Some("1.2.3.4")), peer);
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_address_is_the_client() {
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        let client = proxies().client_address(peer, Some("6.6.6.6, 198.51.100.7, 127.0.0.1"));
        assert_eq!(client, "198.51.100.7".parse::<IpAddr>().expect("ip"));
        assert_eq!(proxies().client_address(peer, None), peer);
    }

    proptest::proptest! {
        #[test]
        fn cursors_round_trip(id in proptest::prelude::any::<u128>(), at in proptest::prelude::any::<i64>()) {
            let cursor = encode_cursor(&(id.to_string(), at));
            let back: (String, i64) = decode_cursor(&cursor).expect("decodes");
            proptest::prop_assert_eq!(back, (id.to_string(), at));
        }

        #[test]
        fn garbage_cursors_are_a_validation_error(garbage in ".{0,40}") {
            if let Err(error) = decode_cursor::<(String, i64)>(&garbage) {
                proptest::prop_assert_eq!(error.code(), crate::error::ErrorCode::Validation);
            }
        }
    }
}
