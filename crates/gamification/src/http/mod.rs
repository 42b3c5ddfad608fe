//! The gamification REST API.

mod achievements;
mod challenges;
mod leaderboards;
mod points;

use utoipa_axum::router::OpenApiRouter;

use crate::Gamification;

/// Every gamification route, with its OpenAPI description.
pub fn router(state: Gamification) -> OpenApiRouter {
    OpenApiRouter::new()
        .merge(points::router())
        .merge(leaderboards::router())
        .merge(achievements::router())
        .merge(challenges::router())
        .with_state(state)
}
