//! The identity tests' app: identity alone.

pub use stride_testkit::*;

/// Starts the identity service with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config()).await
}

/// Starts the identity service with `config`.
pub async fn spawn_app_with(config: stride_platform::config::Config) -> TestApp {
    spawn(&[&stride_identity::SERVICE], config).await
}
