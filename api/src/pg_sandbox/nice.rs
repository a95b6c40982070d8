//! NicePay's shape: approve `POST /v1/payments/{tid} {amount}`, cancel
//! `POST /v1/payments/{tid}/cancel {reason, orderId, cancelAmt?}`, lookup
//! `GET /v1/payments/{tid}`; Basic authorization with `clientKey:secretKey`. Business answers
//! are HTTP 200 with a `resultCode` (`"0000"` is success); a gateway fault is a 5xx.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::book::{Charge, ChargeStatus, Provider, Refusal, StoredAnswer};
use super::faults::Fate;
use super::{gateway_time, idempotency_key, Sandbox};

const PROVIDER: Provider = Provider::Nice;

pub(super) fn router() -> Router<Sandbox> {
    Router::new()
        .route("/payments/{tid}", post(approve).get(lookup))
        .route("/payments/{tid}/cancel", post(cancel))
}

#[derive(Deserialize)]
struct ApproveBody {
    amount: i64,
    /// Not in NicePay's approve body; the sandbox checks it when given.
    #[serde(rename = "orderId")]
    order_id: Option<String>,
}

#[derive(Deserialize)]
struct CancelBody {
    reason: String,
    #[serde(rename = "cancelAmt")]
    cancel_amt: Option<i64>,
}

fn result(status: u16, code: &str, message: &str) -> StoredAnswer {
    StoredAnswer {
        status,
        body: json!({ "resultCode": code, "resultMsg": message }),
    }
}

fn internal() -> StoredAnswer {
    result(500, "9999", "sandbox fault: try again")
}

fn refusal(refusal: Refusal) -> StoredAnswer {
    match refusal {
        Refusal::UnknownPayment => result(200, "A110", "no such transaction"),
        Refusal::Mismatch => result(200, "A123", "amount differs from the checkout"),
        Refusal::AlreadyConfirmed => result(200, "A127", "the transaction was approved before"),
        Refusal::NotRefundable => result(200, "2032", "nothing of that amount can be cancelled"),
    }
}

/// A transaction object.
fn transaction(charge: &Charge) -> StoredAnswer {
    let status = match charge.status {
        ChargeStatus::Ready => "ready",
        ChargeStatus::Paid if charge.refunded_amount > 0 => "partialCancelled",
        ChargeStatus::Paid => "paid",
        ChargeStatus::Failed => "failed",
        ChargeStatus::Refunded => "cancelled",
    };
    let cancels: Vec<serde_json::Value> = charge
        .refunds
        .iter()
        .map(|refund| {
            json!({
                "amount": refund.amount,
                "reason": refund.reason,
                "cancelledAt": gateway_time(refund.at),
            })
        })
        .collect();
    StoredAnswer {
        status: 200,
        body: json!({
            "resultCode": "0000",
            "resultMsg": "success",
            "tid": charge.payment_key,
            "orderId": charge.pg_order_id,
            "status": status,
            "amount": charge.amount,
            "balanceAmt": charge.amount - charge.refunded_amount,
            "cancelledAmt": charge.refunded_amount,
            "paidAt": charge.approved_at.map(gateway_time).unwrap_or_else(|| "0".into()),
            "cancels": cancels,
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StoredAnswer> {
    serde_json::from_slice(body).map_err(|err| result(400, "A001", &format!("bad body: {err}")))
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
    result(401, "U104", "the client key or secret key is wrong")
}

async fn approve(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(tid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: ApproveBody = match admit(&sandbox, PROVIDER, &headers, &body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let key = idempotency_key(&headers);
    sandbox
        .call(PROVIDER, key.as_deref(), internal, |book, fate| {
            let Some(checked_out) = book.lookup(PROVIDER, &tid).cloned() else {
                return refusal(Refusal::UnknownPayment);
            };
            let order_id = body.order_id.unwrap_or(checked_out.pg_order_id);
            if fate == Fate::Decline {
                return match book.decline(PROVIDER, &tid) {
                    Ok(_) => result(200, "3011", "the card was declined"),
                    Err(refused) => refusal(refused),
                };
            }
            match book.confirm(PROVIDER, &tid, &order_id, body.amount) {
                Ok(charge) => transaction(&charge),
                Err(refused) => refusal(refused),
            }
        })
        .await
}

async fn lookup(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(tid): Path<String>,
) -> Response {
    if let Err(refused) = admit::<()>(&sandbox, PROVIDER, &headers, b"null") {
        return refused.into_response();
    }
    sandbox
        .look_up(PROVIDER, internal, |book| {
            match book.lookup(PROVIDER, &tid) {
                Some(charge) => transaction(charge),
                None => refusal(Refusal::UnknownPayment),
            }
        })
        .await
}

async fn cancel(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(tid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: CancelBody = match admit(&sandbox, PROVIDER, &headers, &body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let key = idempotency_key(&headers);
    sandbox
        .call(PROVIDER, key.as_deref(), internal, |book, _| {
            match book.cancel(PROVIDER, &tid, body.cancel_amt, &body.reason) {
                Ok(charge) => transaction(&charge),
                Err(refused) => refusal(refused),
            }
        })
        .await
}
