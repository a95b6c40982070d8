//! A NicePay client: approve `POST /v1/payments/{tid} {amount}`, cancel
//! `POST /v1/payments/{tid}/cancel {reason, orderId, cancelAmt}`, lookup
//! `GET /v1/payments/{tid}`; Basic authorization with `clientKey:secretKey`. Business answers
//! come as HTTP 200 with a `resultCode` (`"0000"` is success).

use async_trait::async_trait;
use serde_json::json;

use super::{
    text, time, GatewayEndpoint, GatewayError, GatewayPayment, GatewayStatus, PaymentGateway,
};

/// NicePay's code for an approve of an approved transaction.
const ALREADY_APPROVED: &str = "A127";

/// NicePay (or the sandbox's `nice`).
pub struct NiceGateway {
    endpoint: GatewayEndpoint,
    http: reqwest::Client,
}

impl NiceGateway {
    pub fn new(endpoint: GatewayEndpoint) -> Self {
        Self {
            http: endpoint.client(),
            endpoint,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/payments/{path}",
            self.endpoint.base_url.trim_end_matches('/')
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<GatewayPayment, GatewayError> {
        let (status, body) = self.endpoint.send(request).await?;
        let code = text(&body, "resultCode");
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(GatewayError::Unavailable(format!("{status} {code}")));
        }
        match code.as_str() {
            "0000" if status.is_success() => transaction(&body),
            ALREADY_APPROVED => Err(GatewayError::AlreadyProcessed),
            _ => Err(GatewayError::Refused {
                code,
                message: text(&body, "resultMsg"),
            }),
        }
    }
}

/// A NicePay transaction object.
fn transaction(body: &serde_json::Value) -> Result<GatewayPayment, GatewayError> {
    let status = match body["status"].as_str().unwrap_or_default() {
        "paid" | "partialCancelled" => GatewayStatus::Paid,
        "cancelled" => GatewayStatus::Cancelled,
        "ready" => GatewayStatus::Ready,
        "failed" | "expired" => GatewayStatus::Failed,
        other => {
            return Err(GatewayError::OutcomeUnknown(format!(
                "unknown transaction status {other:?}"
            )))
        }
    };
    Ok(GatewayPayment {
        payment_key: text(body, "tid"),
        pg_order_id: text(body, "orderId"),
        status,
        amount: body["amount"].as_i64().unwrap_or_default(),
        refunded_amount: body["cancelledAmt"].as_i64().unwrap_or_default(),
        approved_at: time(body, "paidAt"),
    })
}

#[async_trait]
impl PaymentGateway for NiceGateway {
    fn provider(&self) -> &str {
        "nice"
    }

    async fn confirm(
        &self,
        payment_key: &str,
        pg_order_id: &str,
        amount: i64,
    ) -> Result<GatewayPayment, GatewayError> {
        let request = self
            .http
            .post(self.url(payment_key))
            .header("Idempotency-Key", format!("confirm-{payment_key}"))
            .json(&json!({ "amount": amount, "orderId": pg_order_id }));
        self.send(request).await
    }

    async fn cancel(
        &self,
        payment_key: &str,
        pg_order_id: &str,
        amount: i64,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<GatewayPayment, GatewayError> {
        let request = self
            .http
            .post(self.url(&format!("{payment_key}/cancel")))
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({ "reason": reason, "orderId": pg_order_id, "cancelAmt": amount }));
        self.send(request).await
    }

    async fn lookup(&self, payment_key: &str) -> Result<GatewayPayment, GatewayError> {
        self.send(self.http.get(self.url(payment_key))).await
    }
}
