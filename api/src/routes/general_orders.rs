//! General orders: `POST /orders`, `POST /orders/from-cart`, `POST /orders/from-wishlist`.
//! One to 1,000 lines of general items; the store takes the stock of every line or none, at
//! its own prices, in one transaction (with the cart lines, when ordering from the cart).
//! Drop items are sold through `POST /items/{id}/purchase` only: a drop's window, per-user
//! limit and live stock live in its actor, so a general order naming one is refused (422
//! `drop_item_in_order`) before anything is reserved.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use hurry_engine::domain::{IdempotencyKey, Quantity};
use hurry_persistence::{NewGeneralOrder, OrderRecord, Placement};
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::extract::{ApiJson, IdempotencyHeader};
use crate::idempotency::Failure;
use crate::state::AppState;
use crate::views::OrderView;

/// Most lines in one order.
pub const MAX_LINES: usize = 1_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orders", post(create_order))
        .route("/orders/from-cart", post(order_from_cart))
        .route("/orders/from-wishlist", post(order_from_wishlist))
}

#[derive(Deserialize)]
struct LineBody {
    item_id: i64,
    quantity: i64,
}

#[derive(Deserialize)]
struct LinesBody {
    lines: Vec<LineBody>,
}

/// Checks the lines: 1 to 1,000, quantities 1..=10,000, no item twice (each item's stock is
/// checked once, against the whole quantity).
fn validate_lines(lines: &[LineBody]) -> Result<Vec<(i64, i64)>, ApiError> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(ApiError::invalid_field(
            "lines",
            "must hold 1 to 1000 lines",
        ));
    }
    let mut details = Vec::new();
    let mut seen = HashSet::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        if Quantity::new(line.quantity).is_none() {
            details.push(FieldError::new(
                format!("lines[{index}].quantity"),
                "must be between 1 and 10000",
            ));
        }
        if !seen.insert(line.item_id) {
            details.push(FieldError::new(
                format!("lines[{index}].item_id"),
                "appears twice: put the whole quantity on one line",
            ));
        }
    }
    if details.is_empty() {
        Ok(lines
            .iter()
            .map(|line| (line.item_id, line.quantity))
            .collect())
    } else {
        Err(ApiError::validation(details))
    }
}

/// The request as hashed for `Idempotency-Key`.
fn canonical(path: &str, lines: &[(i64, i64)]) -> String {
    let mut text = format!("POST {path}");
    for (item_id, quantity) in lines {
        text.push_str(&format!(" {item_id}x{quantity}"));
    }
    text
}

/// Places the order (once per idempotency key) and clears the cache of its items.
async fn place(
    state: &AppState,
    user_id: i64,
    key: Option<IdempotencyKey>,
    path: &str,
    lines: Vec<(i64, i64)>,
    from_cart: bool,
) -> Result<OrderRecord, ApiError> {
    let shared = state.clone();
    let request = canonical(path, &lines);
    let order = state
        .idempotency
        .run(&state.store, user_id, key, &request, move |entry| async move {
            let window = shared.settings.engine.payment_window();
            // Microseconds: what both stores keep, so a replayed answer matches the first.
            let now = hurry_persistence::now_micros();
            let order = NewGeneralOrder {
                id: shared.engine.next_order_id().await?,
                user_id,
                lines,
                payment_due_at: Some(now + window),
                created_at: now,
                idempotency: entry,
                from_cart,
            };
            match shared.store.place_order(&order).await.map_err(Failure::from)? {
                Placement::Placed(record) => {
                    let ids: Vec<i64> = record.lines.iter().map(|line| line.item_id).collect();
                    shared.catalog.changed(&ids);
                    Ok(record)
                }
                Placement::UnknownItem(item_id) => {
                    Err(ApiError::not_found(format!("item {item_id} not found")).into())
                }
                Placement::DropItem(item_id) => Err(ApiError::new(
                    ErrorCode::DropItemInOrder,
                    format!("item {item_id} is sold in a drop: buy it with POST /items/{item_id}/purchase"),
                )
                .into()),
                Placement::InsufficientStock(item_id) => Err(ApiError::new(
                    ErrorCode::InsufficientStock,
                    format!("item {item_id} has fewer units than ordered; nothing was reserved"),
                )
                .into()),
                Placement::AmountTooLarge => Err(ApiError::invalid_field(
                    "lines",
                    "the order's amount is larger than the largest amount in won",
                )
                .into()),
                Placement::Repeat => Err(Failure::Repeat),
            }
        })
        .await?;
    Ok(order)
}

async fn create_order(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    ApiJson(body): ApiJson<LinesBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    state.rate_limits.purchase(user.id)?;
    let lines = validate_lines(&body.lines)?;
    let order = place(&state, user.id, key, "/orders", lines, false).await?;
    Ok((StatusCode::CREATED, Json(order.into())))
}

#[derive(Deserialize, Default)]
struct FromCartBody {
    item_ids: Option<Vec<i64>>,
}

/// Orders the whole cart, or the chosen items of it; the ordered lines leave the cart in the
/// order's transaction.
async fn order_from_cart(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    ApiJson(body): ApiJson<FromCartBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    state.rate_limits.purchase(user.id)?;
    let cart: HashMap<i64, i64> = state
        .store
        .cart(user.id)
        .await?
        .into_iter()
        .map(|line| (line.item_id, line.quantity))
        .collect();
    let chosen: Vec<LineBody> = match body.item_ids {
        None => {
            let mut all: Vec<(i64, i64)> = cart.into_iter().collect();
            all.sort_unstable();
            all.into_iter()
                .map(|(item_id, quantity)| LineBody { item_id, quantity })
                .collect()
        }
        Some(ids) => {
            let mut lines = Vec::with_capacity(ids.len());
            for (index, item_id) in ids.into_iter().enumerate() {
                let Some(&quantity) = cart.get(&item_id) else {
                    return Err(ApiError::invalid_field(
                        &format!("item_ids[{index}]"),
                        "is not in the cart",
                    ));
                };
                lines.push(LineBody { item_id, quantity });
            }
            lines
        }
    };
    if chosen.is_empty() {
        return Err(ApiError::invalid_field("item_ids", "the cart is empty"));
    }
    let lines = validate_lines(&chosen)?;
    let order = place(&state, user.id, key, "/orders/from-cart", lines, true).await?;
    Ok((StatusCode::CREATED, Json(order.into())))
}

/// Orders items of the wishlist (each line's item must be on it; the wishlist stays).
async fn order_from_wishlist(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    ApiJson(body): ApiJson<LinesBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    state.rate_limits.purchase(user.id)?;
    let lines = validate_lines(&body.lines)?;
    let wished: HashSet<i64> = state
        .store
        .wishlist(user.id)
        .await?
        .iter()
        .map(|item| item.id)
        .collect();
    let details: Vec<FieldError> = lines
        .iter()
        .enumerate()
        .filter(|(_, (item_id, _))| !wished.contains(item_id))
        .map(|(index, _)| {
            FieldError::new(format!("lines[{index}].item_id"), "is not on the wishlist")
        })
        .collect();
    if !details.is_empty() {
        return Err(ApiError::validation(details));
    }
    let order = place(&state, user.id, key, "/orders/from-wishlist", lines, false).await?;
    Ok((StatusCode::CREATED, Json(order.into())))
}
