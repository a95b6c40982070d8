//! Drop purchases (through the seller: the engine, or a comparison baseline) and order
//! history.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hurry_engine::domain::Quantity;
use hurry_engine::{NotServed, PurchaseError, PurchaseRequest};
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, IdempotencyHeader, PageQuery};
use crate::idempotency::Failure;
use crate::state::AppState;
use crate::views::{OrderView, PageRows, PageView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/items/{id}/purchase", post(purchase))
        .route("/orders", get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/orders/{id}/return", post(return_order))
}

#[derive(Deserialize)]
struct ReasonBody {
    reason: String,
}

/// Longest `reason` of a cancel or return, in bytes.
const MAX_REASON_LEN: usize = 500;

fn check_reason(body: &ReasonBody) -> Result<(), ApiError> {
    if body.reason.len() > MAX_REASON_LEN {
        return Err(ApiError::invalid_field(
            "reason",
            "must be at most 500 bytes",
        ));
    }
    Ok(())
}

/// Cancels the caller's order before it ships: its units go back to stock and a paid
/// payment is refunded through the gateway that took it.
async fn cancel_order(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<OrderView>, ApiError> {
    asked(&state, &user, id, &body, "cancel").await?;
    Ok(Json(state.payments.cancel(id).await?.into()))
}

/// Takes the caller's delivered order back within the return window: its payment is
/// refunded, and it is `returned` (units back) once the refund is through.
async fn return_order(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<OrderView>, ApiError> {
    asked(&state, &user, id, &body, "return").await?;
    Ok(Json(state.payments.request_return(id).await?.into()))
}

/// Checks a cancel's or return's reason and that order `id` is the caller's; logs the ask.
async fn asked(
    state: &AppState,
    user: &AuthUser,
    id: i64,
    body: &ReasonBody,
    what: &str,
) -> Result<(), ApiError> {
    check_reason(body)?;
    own_order(state, user.id, id).await?;
    tracing::info!(order_id = id, reason = %body.reason, "order {what} asked");
    Ok(())
}

/// The caller's order `id`, or 404.
async fn own_order(
    state: &AppState,
    user_id: i64,
    id: i64,
) -> Result<hurry_persistence::OrderRecord, ApiError> {
    state
        .store
        .order_by_id(id)
        .await?
        .filter(|order| order.user_id == user_id)
        .ok_or_else(|| ApiError::not_found(format!("order {id} not found")))
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
    // unless the key may have an earlier answer to repeat or a request in flight to join.
    // (Without a key the seller's own first check answers it.)
    if let Some(key) = &key {
        if state.idempotency.is_fresh(user.id, key) {
            if let Some(refusal) = state.seller.refusal(item_id) {
                return Err(refusal.into());
            }
        }
    }
    let canonical = format!("POST /items/{item_id}/purchase {}", quantity.get());
    let seller = state.seller.clone();
    let user_id = user.id;
    let order = state
        .idempotency
        .run(
            &state.store,
            user_id,
            key,
            &canonical,
            move |idempotency| async move {
                let request = PurchaseRequest {
                    item_id,
                    user_id,
                    quantity,
                    idempotency,
                };
                seller.purchase(request).await.map_err(|err| match err {
                    PurchaseError::NotServed(NotServed::UnknownItem) => {
                        Failure::Answer(item_not_found(item_id))
                    }
                    other => other.into(),
                })
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(order.into())))
}

/// 404 for an unknown (or deleted) item.
fn item_not_found(item_id: i64) -> ApiError {
    ApiError::not_found(format!("item {item_id} not found"))
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
    Ok(Json(own_order(&state, user.id, id).await?.into()))
}
