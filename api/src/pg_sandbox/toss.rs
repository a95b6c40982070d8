//! Toss Payments' shape: `POST /v1/payments/confirm {paymentKey, orderId, amount}`,
//! `POST /v1/payments/{paymentKey}/cancel {cancelReason, cancelAmount?}`,
//! `GET /v1/payments/{paymentKey}`; Basic authorization with the secret key; errors as
//! `{code, message}` with an HTTP status.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::book::{Charge, ChargeStatus, Provider, Refusal, StoredAnswer};
use super::faults::Fate;
use super::{gateway_time, idempotency_key, Sandbox};

pub(super) fn router(provider: Provider) -> Router<Sandbox> {
    Router::new()
        .route(
            "/payments/confirm",
            post(move |state, headers, body| confirm(provider, state, headers, body)),
        )
        .route(
            "/payments/{payment_key}",
            get(move |state, headers, path| lookup(provider, state, headers, path)),
        )
        .route(
            "/payments/{payment_key}/cancel",
            post(move |state, headers, path, body| cancel(provider, state, headers, path, body)),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmBody {
    payment_key: String,
    order_id: String,
    amount: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelBody {
    cancel_reason: String,
    cancel_amount: Option<i64>,
}

fn error(status: u16, code: &str, message: &str) -> StoredAnswer {
    StoredAnswer {
        status,
        body: json!({ "code": code, "message": message }),
    }
}

fn internal() -> StoredAnswer {
    error(
        500,
        "FAILED_INTERNAL_SYSTEM_PROCESSING",
        "sandbox fault: try again",
    )
}

/// The body of a call that carries `provider`'s keys, or the answer refusing it (401 without
/// them, 400 for a body that does not parse).
fn admit<T: serde::de::DeserializeOwned>(
    sandbox: &Sandbox,
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, StoredAnswer> {
    if !sandbox.authorized(provider, headers) {
        return Err(unauthorized());
    }
    parse(body)
}

fn unauthorized() -> StoredAnswer {
    error(401, "UNAUTHORIZED_KEY", "the secret key is wrong")
}

fn refusal(refusal: Refusal) -> StoredAnswer {
    match refusal {
        Refusal::UnknownPayment => error(404, "NOT_FOUND_PAYMENT", "no such payment"),
        Refusal::Mismatch => error(
            400,
            "INVALID_REQUEST",
            "orderId or amount differ from the checkout",
        ),
        Refusal::AlreadyConfirmed => error(
            400,
            "ALREADY_PROCESSED_PAYMENT",
            "the payment was processed before",
        ),
        Refusal::NotRefundable => error(
            403,
            "NOT_CANCELABLE_AMOUNT",
            "nothing of that amount can be cancelled",
        ),
    }
}

/// A payment object.
fn payment(charge: &Charge) -> StoredAnswer {
    let status = match charge.status {
        ChargeStatus::Ready => "READY",
        ChargeStatus::Paid if charge.refunded_amount > 0 => "PARTIAL_CANCELED",
        ChargeStatus::Paid => "DONE",
        ChargeStatus::Failed => "ABORTED",
        ChargeStatus::Refunded => "CANCELED",
    };
    let cancels: Vec<serde_json::Value> = charge
        .refunds
        .iter()
        .map(|refund| {
            json!({
                "cancelAmount": refund.amount,
                "cancelReason": refund.reason,
                "canceledAt": gateway_time(refund.at),
            })
        })
        .collect();
    StoredAnswer {
        status: 200,
        body: json!({
            "paymentKey": charge.payment_key,
            "orderId": charge.pg_order_id,
            "status": status,
            "method": "CARD",
            "totalAmount": charge.amount,
            "balanceAmount": charge.amount - charge.refunded_amount,
            "approvedAt": charge.approved_at.map(gateway_time),
            "cancels": if cancels.is_empty() { serde_json::Value::Null } else { cancels.into() },
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StoredAnswer> {
    serde_json::from_slice(body)
        .map_err(|err| error(400, "INVALID_REQUEST", &format!("bad body: {err}")))
}

async fn confirm(
    provider: Provider,
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: ConfirmBody = match admit(&sandbox, provider, &headers, &body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let key = idempotency_key(&headers);
    sandbox
        .call(provider, key.as_deref(), internal, |book, fate| {
            let done = if fate == Fate::Decline {
                book.decline(provider, &body.payment_key).map(|_| None)
            } else {
                book.confirm(provider, &body.payment_key, &body.order_id, body.amount)
                    .map(Some)
            };
            match done {
                Ok(Some(charge)) => payment(&charge),
                Ok(None) => error(403, "REJECT_CARD_PAYMENT", "the card was declined"),
                Err(refused) => refusal(refused),
            }
        })
        .await
}

async fn lookup(
    provider: Provider,
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(payment_key): Path<String>,
) -> Response {
    if let Err(refused) = admit::<()>(&sandbox, provider, &headers, b"null") {
        return refused.into_response();
    }
    sandbox
        .look_up(provider, internal, |book| {
            match book.lookup(provider, &payment_key) {
                Some(charge) => payment(charge),
                None => refusal(Refusal::UnknownPayment),
            }
        })
        .await
}

async fn cancel(
    provider: Provider,
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(payment_key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: CancelBody = match admit(&sandbox, provider, &headers, &body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let key = idempotency_key(&headers);
    sandbox
        .call(provider, key.as_deref(), internal, |book, _| {
            match book.cancel(
                provider,
                &payment_key,
                body.cancel_amount,
                &body.cancel_reason,
            ) {
                Ok(charge) => payment(&charge),
                Err(refused) => refusal(refused),
            }
        })
        .await
}
