//! The inventory REST API.

mod catalog;
mod gear;

use utoipa_axum::router::OpenApiRouter;

use crate::Inventory;

/// Every inventory route, with its OpenAPI description.
pub fn router(state: Inventory) -> OpenApiRouter {
    OpenApiRouter::new()
        .merge(gear::router())
        .merge(catalog::router())
        .with_state(state)
}
