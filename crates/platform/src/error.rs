//! Errors at the edges: one [`ErrorCode`] shared by HTTP (RFC 9457 problem+json) and gRPC, and
//! [`ApiError`], the error every handler returns.
//!
//! Internal details (database errors, broker errors) are logged with the request id and never
//! sent to the client.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// The kinds of failure a client can tell apart. The slug is the stable part of the problem
/// `type` URI; clients may switch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or a value is out of range.
    Validation,
    /// No valid credentials.
    Unauthorized,
    /// Authenticated, but not allowed.
    Forbidden,
    /// No such resource (or not visible to the caller).
    NotFound,
    /// The request conflicts with the current state (duplicate, wrong lifecycle state).
    Conflict,
    /// The endpoint exists but not with this method.
    MethodNotAllowed,
    /// An `If-Match` precondition failed.
    PreconditionFailed,
    /// The request must be conditional (`If-Match`) and is not.
    PreconditionRequired,
    /// The body is larger than allowed.
    PayloadTooLarge,
    /// The body has a content type the endpoint does not take.
    UnsupportedMediaType,
    /// Well-formed, but cannot be processed (an `Idempotency-Key` reused for another body).
    UnprocessableContent,
    /// Too many requests; retry after the given delay.
    TooManyRequests,
    /// A dependency is down; retry later.
    Unavailable,
    /// A bug or an unexpected failure; details are in the logs.
    Internal,
}

impl ErrorCode {
    /// The HTTP status of this code.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::Validation => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorCode::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnprocessableContent => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code of this code.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::Validation => tonic::Code::InvalidArgument,
            ErrorCode::Unauthorized => tonic::Code::Unauthenticated,
            ErrorCode::Forbidden => tonic::Code::PermissionDenied,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Conflict => tonic::Code::AlreadyExists,
            ErrorCode::MethodNotAllowed => tonic::Code::Unimplemented,
            ErrorCode::PreconditionFailed => tonic::Code::FailedPrecondition,
            ErrorCode::PreconditionRequired => tonic::Code::FailedPrecondition,
            ErrorCode::PayloadTooLarge => tonic::Code::ResourceExhausted,
            ErrorCode::UnsupportedMediaType => tonic::Code::InvalidArgument,
            ErrorCode::UnprocessableContent => tonic::Code::FailedPrecondition,
            ErrorCode::TooManyRequests => tonic::Code::ResourceExhausted,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    /// The stable slug, e.g. `validation-error`.
    pub fn slug(self) -> &'static str {
        match self {
            ErrorCode::Validation => "validation-error",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::MethodNotAllowed => "method-not-allowed",
            ErrorCode::PreconditionFailed => "precondition-failed",
            ErrorCode::PreconditionRequired => "precondition-required",
            ErrorCode::PayloadTooLarge => "payload-too-large",
            ErrorCode::UnsupportedMediaType => "unsupported-media-type",
            ErrorCode::UnprocessableContent => "unprocessable-content",
            ErrorCode::TooManyRequests => "too-many-requests",
            ErrorCode::Unavailable => "service-unavailable",
            ErrorCode::Internal => "internal-error",
        }
    }

    /// A short human title.
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::Validation => "The request is invalid",
            ErrorCode::Unauthorized => "Authentication is required",
            ErrorCode::Forbidden => "Not allowed",
            ErrorCode::NotFound => "Not found",
            ErrorCode::Conflict => "Conflict with the current state",
            ErrorCode::MethodNotAllowed => "Method not allowed",
            ErrorCode::PreconditionFailed => "Precondition failed",
            ErrorCode::PreconditionRequired => "Precondition required",
            ErrorCode::PayloadTooLarge => "Payload too large",
            ErrorCode::UnsupportedMediaType => "Unsupported media type",
            ErrorCode::UnprocessableContent => "Unprocessable content",
            ErrorCode::TooManyRequests => "Too many requests",
            ErrorCode::Unavailable => "Service temporarily unavailable",
            ErrorCode::Internal => "Internal error",
        }
    }

    /// The problem `type` URI.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.slug())
    }
}

/// Every problem `type` starts with this.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:stride:problem:";

/// An error a handler returns; becomes problem+json.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    retry_after_seconds: Option<u64>,
    source: Option<anyhow::Error>,
}

/// The problem+json body (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable URI of the problem kind, `urn:stride:problem:<slug>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong with this request, for a person.
    pub detail: String,
}

impl ApiError {
    /// An error of `code` with a message for the client.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            retry_after_seconds: None,
            source: None,
        }
    }

    /// 400 with a reason.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, detail)
    }

    /// 401 with a reason.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, detail)
    }

    /// 403 with a reason.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, detail)
    }

    /// 404 with a reason.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    /// 409 with a reason.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, detail)
    }

    /// 429 with the delay after which a retry may succeed.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self::new(ErrorCode::TooManyRequests, detail).retry_after(retry_after_seconds)
    }

    /// 503 with the delay after which a retry may succeed; `source` is logged.
    pub fn unavailable(source: impl Into<anyhow::Error>, retry_after_seconds: u64) -> Self {
        Self {
            code: ErrorCode::Unavailable,
            detail: "a dependency of this service is unavailable; retry later".into(),
            retry_after_seconds: Some(retry_after_seconds),
            source: Some(source.into()),
        }
    }

    /// 500; `source` is logged, never sent.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self {
            code: ErrorCode::Internal,
            detail: "an unexpected error happened; it has been logged".into(),
            retry_after_seconds: None,
            source: Some(source.into()),
        }
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The client-facing message.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The body that is sent.
    pub fn problem(&self) -> Problem {
        Problem {
            problem_type: self.code.type_uri(),
            title: self.code.title().to_owned(),
            status: self.code.http_status().as_u16(),
            detail: self.detail.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.slug(), self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            match self.code {
                ErrorCode::Internal => tracing::error!(error = ?source, "request failed"),
                _ => tracing::warn!(error = ?source, code = self.code.slug(), "request failed"),
            }
        }
        let status = self.code.http_status();
        let mut response = (status, axum::Json(self.problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.code == ErrorCode::Unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        if let Some(source) = &error.source {
            tracing::error!(error = ?source, "grpc call failed");
        }
        tonic::Status::new(error.code.grpc_code(), error.detail)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                ApiError::unavailable(error, 2)
            }
            _ => ApiError::internal(error),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::internal(error)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected a body with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(bytes)
                if bytes.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            }
            other => ApiError::validation(format!("invalid JSON body: {}", other.body_text())),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::validation(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::validation(format!("invalid query string: {}", rejection.body_text()))
    }
}

/// Whether a database error is the violation of the named unique or check constraint.
pub fn is_constraint_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.constraint() == Some(constraint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_slug_and_a_client_or_server_status() {
        let codes = [
            ErrorCode::Validation,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PreconditionFailed,
            ErrorCode::PreconditionRequired,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::UnprocessableContent,
            ErrorCode::TooManyRequests,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ];
        let mut slugs: Vec<_> = codes.iter().map(|c| c.slug()).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), codes.len());
        for code in codes {
            assert!(code.http_status().is_client_error() || code.http_status().is_server_error());
        }
    }

    #[test]
    fn internal_errors_never_reveal_their_source() {
        let error = ApiError::internal(anyhow::anyhow!("password=hunter2 at db host 10.0.0.5"));
        let problem = error.problem();
        assert!(!problem.detail.contains("hunter2"));
        assert_eq!(problem.status, 500);
        assert_eq!(problem.problem_type, "urn:stride:problem:internal-error");
    }
}
