//! Payments: `POST /orders/{id}/payments` opens one (the server computes the amount),
//! `POST /payments/confirm` takes the money through the gateway the checkout went to,
//! `GET /payments/{id}` reads one; `GET /admin/refunds` lists refunds owed or done.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hurry_engine::domain::OrderStatus;
use hurry_engine::payment::PaymentError;
use hurry_persistence::{NewPayment, OrderRecord, PaymentRecord};
use serde::Deserialize;

use crate::auth::{Admin, AuthUser};
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::views::{PaymentView, RefundView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orders/{id}/payments", post(open_payment))
        .route("/payments/confirm", post(confirm))
        .route("/payments/{id}", get(get_payment))
        .route("/admin/refunds", get(list_refunds))
        .route("/admin/gateways", get(list_gateways))
}

/// The gateways a payment may name.
const PROVIDERS: [&str; 3] = ["toss", "nice", "sandbox"];

#[derive(Deserialize)]
struct OpenBody {
    provider: Option<String>,
}

async fn open_payment(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(order_id): ApiPath<i64>,
    ApiJson(body): ApiJson<OpenBody>,
) -> Result<(StatusCode, Json<PaymentView>), ApiError> {
    if let Some(provider) = &body.provider {
        if !PROVIDERS.contains(&provider.as_str()) {
            return Err(ApiError::invalid_field(
                "provider",
                "must be toss, nice or sandbox",
            ));
        }
    }
    let order = own_order(&state, user.id, order_id).await?;
    payable(&order)?;
    // A gateway whose breaker is open hands its new payments to the next one.
    let provider = state.payments.provider_for(body.provider.as_deref())?;
    let id = state.store.allocate_ids("payments", 1).await?;
    let payment = NewPayment {
        id,
        order_id,
        user_id: user.id,
        pg_order_id: format!("hurry-{order_id}-{id}"),
        provider,
        amount: order.amount,
        created_at: hurry_persistence::now_micros(),
    };
    let payment = state.store.create_payment(&payment).await?;
    Ok((StatusCode::CREATED, Json(payment.into())))
}

#[derive(Deserialize)]
struct ConfirmBody {
    payment_key: String,
    pg_order_id: String,
    amount: i64,
}

async fn confirm(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<Json<PaymentView>, ApiError> {
    let mut details = Vec::new();
    if !visible_ascii(&body.payment_key, 200) {
        details.push(FieldError::new(
            "payment_key",
            "must be 1 to 200 visible ASCII characters",
        ));
    }
    if !visible_ascii(&body.pg_order_id, 64) {
        details.push(FieldError::new(
            "pg_order_id",
            "must be 1 to 64 visible ASCII characters",
        ));
    }
    if !details.is_empty() {
        return Err(ApiError::validation(details));
    }
    let payment = state
        .store
        .payment_by_pg_order_id(&body.pg_order_id)
        .await?
        .filter(|payment| payment.user_id == user.id)
        .ok_or_else(|| payment_not_found(&body.pg_order_id))?;
    if body.amount != payment.amount {
        return Err(PaymentError::AmountMismatch.into());
    }
    if payment.status == "ready" {
        let order = own_order(&state, user.id, payment.order_id).await?;
        payable(&order)?;
    }
    let payment = state.payments.confirm(&payment, &body.payment_key).await?;
    if payment.status == "failed" {
        // The order's general stock is back: the catalogue must show it.
        if let Some(order) = state.store.order_by_id(payment.order_id).await? {
            let ids: Vec<i64> = order.lines.iter().map(|line| line.item_id).collect();
            state.catalog.changed(&ids);
        }
    }
    Ok(Json(payment.into()))
}

async fn get_payment(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PaymentView>, ApiError> {
    state
        .store
        .payment_by_id(id)
        .await?
        .filter(|payment| payment.user_id == user.id)
        .map(|payment: PaymentRecord| Json(payment.into()))
        .ok_or_else(|| ApiError::not_found(format!("payment {id} not found")))
}

#[derive(Deserialize)]
struct RefundsQuery {
    status: Option<String>,
}

async fn list_refunds(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<RefundsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = query.status.unwrap_or_else(|| "pending".into());
    if status != "pending" && status != "done" {
        return Err(ApiError::invalid_field("status", "must be pending or done"));
    }
    let refunds: Vec<RefundView> = state
        .store
        .refunds(&status, 1_000)
        .await?
        .into_iter()
        .map(RefundView::from)
        .collect();
    Ok(Json(serde_json::json!({ "refunds": refunds })))
}

/// Every gateway with the state of its circuit breaker.
async fn list_gateways(State(state): State<AppState>, _admin: Admin) -> Json<serde_json::Value> {
    let mut gateways: Vec<serde_json::Value> = state
        .payments
        .gateways()
        .iter()
        .map(|(name, gateway)| {
            serde_json::json!({ "provider": name, "breaker": gateway.breaker_state() })
        })
        .collect();
    gateways.sort_by(|a, b| a["provider"].as_str().cmp(&b["provider"].as_str()));
    Json(serde_json::json!({ "gateways": gateways }))
}

/// The caller's order `order_id`, or 404.
async fn own_order(state: &AppState, user_id: i64, order_id: i64) -> Result<OrderRecord, ApiError> {
    state
        .store
        .order_by_id(order_id)
        .await?
        .filter(|order| order.user_id == user_id)
        .ok_or_else(|| ApiError::not_found(format!("order {order_id} not found")))
}

/// `Ok` when the order waits for payment; 409 `order_expired` when it stopped waiting.
fn payable(order: &OrderRecord) -> Result<(), ApiError> {
    match OrderStatus::parse(&order.status) {
        Some(OrderStatus::PendingPayment) => Ok(()),
        Some(OrderStatus::Expired | OrderStatus::Cancelled | OrderStatus::PaymentFailed) => {
            Err(PaymentError::OrderExpired.into())
        }
        _ => Err(PaymentError::NotPayable(order.status.clone()).into()),
    }
}

fn payment_not_found(pg_order_id: &str) -> ApiError {
    ApiError::not_found(format!("payment {pg_order_id} not found"))
}

fn visible_ascii(text: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_graphic())
}
