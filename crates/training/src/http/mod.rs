//! The training REST API.

mod activities;
mod settings;
mod uploads;

pub(crate) use activities::owner_visibility;

use utoipa_axum::router::OpenApiRouter;

use crate::Training;

/// Every training route, with its OpenAPI description.
pub fn router(state: Training) -> OpenApiRouter {
    OpenApiRouter::new()
        .merge(activities::router())
        .merge(settings::router())
        .merge(uploads::router())
        .with_state(state)
}
