//! The gamification REST API.

mod leaderboards;
mod points;

use utoipa_axum::router::OpenApiRouter;

use crate::Gamification;

/// Every gamification route, with its OpenAPI description.
pub fn router(state: Gamification) -> OpenApiRouter {
    OpenApiRouter::new()
        .merge(points::router())
        .merge(leaderboards::router())
        .with_state(state)
}
