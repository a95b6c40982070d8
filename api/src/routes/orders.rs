//! Drop purchases (through the configured stock strategy) and order history.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use hurry_engine::domain::Quantity;
use hurry_engine::engine::PurchaseError;
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, IdempotencyHeader, PageQuery};
use crate::state::AppState;
use crate::strategy::Strategy;
use crate::views::{OrderView, PageRows, PageView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/items/{id}/purchase", post(purchase))
        .route("/orders", get(list_orders))
        .route("/orders/{id}", get(get_order))
}

#[derive(Deserialize)]
struct PurchaseBody {
    quantity: i64,
}

async fn purchase(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(item_id): ApiPath<i64>,
    IdempotencyHeader(key): IdempotencyHeader,
    ApiJson(body): ApiJson<PurchaseBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    state.rate_limits.purchase(user.id)?;
    let quantity = Quantity::new(body.quantity)
        .ok_or_else(|| ApiError::invalid_field("quantity", "must be between 1 and 10000"))?;
    // A keyed purchase of a sold-out (or closed, not yet open) drop answers from memory too,
    // before the coalescer, unless the key has an earlier answer to repeat or a request in
    // flight to join. (Without a key the engine's own first check answers it.)
    // Only the actor strategy answers from memory; the others skip the in-flight check too.
    let fresh_key = matches!(state.strategy, Strategy::Actor)
        && key
            .as_ref()
            .is_some_and(|key| state.idempotency.is_fresh(user.id, key));
    if fresh_key {
        if let Some(refusal) = state.engine.refusal(item_id) {
            return Err(refusal.into());
        }
    }
    let canonical = format!("POST /items/{item_id}/purchase {}", quantity.get());
    let shared = state.clone();
    let order = state
        .idempotency
        .run(
            &state.store,
            user.id,
            key,
            &canonical,
            move |entry| async move {
                match &shared.strategy {
                    Strategy::Actor => {
                        match shared
                            .engine
                            .purchase(item_id, user.id, quantity, entry)
                            .await
                        {
                            Err(PurchaseError::NotServed) => {
                                Err(not_served(&shared, item_id).await)
                            }
                            other => other.map_err(ApiError::from),
                        }
                    }
                    Strategy::RedisLua(lua) => {
                        lua.purchase(&shared, item_id, user.id, quantity, entry)
                            .await
                    }
                    Strategy::PgRow(row) => {
                        row.purchase(&shared, item_id, user.id, quantity, entry)
                            .await
                    }
                }
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(order.into())))
}

/// Why an item has no drop served here.
async fn not_served(state: &AppState, item_id: i64) -> ApiError {
    match state.store.item_by_id(item_id).await {
        Ok(None) => item_not_found(item_id),
        Ok(Some(item)) => match item.drop {
            None => not_a_drop(),
            Some(drop) if drop.closes_at <= Utc::now() => {
                ApiError::new("drop_closed", "drop is closed")
            }
            Some(_) => ApiError::new("unavailable", "the drop is starting"),
        },
        Err(err) => err.into(),
    }
}

/// 404 for an unknown (or deleted) item.
pub(crate) fn item_not_found(item_id: i64) -> ApiError {
    ApiError::not_found(format!("item {item_id} not found"))
}

/// 409 `not_a_drop`: a general item is bought with `POST /orders`.
pub(crate) fn not_a_drop() -> ApiError {
    ApiError::new(
        "not_a_drop",
        "this item is not sold in a drop: use POST /orders",
    )
}

async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PageView<OrderView>>, ApiError> {
    let (page, size) = query.validate()?;
    let listing = state.store.list_orders(user.id, page, size).await?;
    Ok(Json(PageView {
        rows: PageRows::Orders(listing.rows.into_iter().map(OrderView::from).collect()),
        page,
        size,
        total: listing.total,
    }))
}

async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<OrderView>, ApiError> {
    state
        .store
        .order_by_id(id)
        .await?
        .filter(|order| order.user_id == user.id)
        .map(|order| Json(order.into()))
        .ok_or_else(|| ApiError::not_found(format!("order {id} not found")))
}
