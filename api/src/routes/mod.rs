//! One module per API resource, each with its `router()`; [`router`] merges them.

pub mod admin;
pub mod auth;
pub mod cart;
pub mod general_orders;
pub mod items;
pub mod ops;
pub mod orders;
pub mod payments;
pub mod provisioning;
pub mod settlements;
pub mod users;
pub mod verify;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::telemetry;

/// The whole API: `/api/v1/...`, health, readiness and metrics.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.http.body_limit_bytes;
    let api = Router::new()
        .merge(auth::router())
        .merge(items::router())
        .merge(orders::router())
        .merge(general_orders::router())
        .merge(payments::router())
        .merge(settlements::router())
        .merge(cart::router())
        .merge(users::router())
        .merge(verify::router())
        .merge(admin::router())
        .merge(provisioning::router());
    let mut root = Router::new().nest("/api/v1", api).merge(ops::router());
    if let Some(sandbox) = &state.sandbox {
        root = root.nest_service(
            crate::payments::SANDBOX_PATH,
            crate::pg_sandbox::router(sandbox.clone()),
        );
    }
    root.fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(telemetry::track_requests))
        .layer(CatchPanicLayer::custom(|_| {
            use axum::response::IntoResponse;
            tracing::error!("handler panicked");
            ApiError::new(ErrorCode::InternalError, "internal error").into_response()
        }))
        .with_state(state)
}
