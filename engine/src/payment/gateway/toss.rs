//! A Toss Payments client: confirm `POST /v1/payments/confirm {paymentKey, orderId, amount}`,
//! cancel `POST /v1/payments/{paymentKey}/cancel {cancelReason, cancelAmount}`, lookup
//! `GET /v1/payments/{paymentKey}`; Basic authorization with the secret key; an
//! `Idempotency-Key` on confirm and cancel.

use async_trait::async_trait;
use serde_json::json;

use super::{
    text, time, GatewayEndpoint, GatewayError, GatewayPayment, GatewayStatus, PaymentGateway,
};

/// Toss Payments (or a gateway in its shape: the sandbox's `toss` and `sandbox`).
pub struct TossGateway {
    provider: String,
    endpoint: GatewayEndpoint,
    http: reqwest::Client,
}

impl TossGateway {
    pub fn new(provider: impl Into<String>, endpoint: GatewayEndpoint) -> Self {
        Self {
            provider: provider.into(),
            http: endpoint.client(),
            endpoint,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/payments{path}",
            self.endpoint.base_url.trim_end_matches('/')
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<GatewayPayment, GatewayError> {
        let (status, body) = self.endpoint.send(request).await?;
        if status.is_success() {
            return payment(&body);
        }
        let code = text(&body, "code");
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(GatewayError::Unavailable(format!("{status} {code}")));
        }
        if code == "ALREADY_PROCESSED_PAYMENT" {
            return Err(GatewayError::AlreadyProcessed);
        }
        Err(GatewayError::Refused {
            code,
            message: text(&body, "message"),
        })
    }
}

/// A Toss payment object.
fn payment(body: &serde_json::Value) -> Result<GatewayPayment, GatewayError> {
    let status = match body["status"].as_str().unwrap_or_default() {
        "DONE" | "PARTIAL_CANCELED" => GatewayStatus::Paid,
        "CANCELED" => GatewayStatus::Cancelled,
        "READY" | "IN_PROGRESS" | "WAITING_FOR_DEPOSIT" => GatewayStatus::Ready,
        "ABORTED" | "EXPIRED" => GatewayStatus::Failed,
        other => {
            return Err(GatewayError::OutcomeUnknown(format!(
                "unknown payment status {other:?}"
            )))
        }
    };
    let amount = body["totalAmount"].as_i64().unwrap_or_default();
    let balance = body["balanceAmount"].as_i64().unwrap_or(amount);
    Ok(GatewayPayment {
        payment_key: text(body, "paymentKey"),
        pg_order_id: text(body, "orderId"),
        status,
        amount,
        refunded_amount: amount - balance,
        approved_at: time(body, "approvedAt"),
    })
}

#[async_trait]
impl PaymentGateway for TossGateway {
    fn provider(&self) -> &str {
        &self.provider
    }

    async fn confirm(
        &self,
        payment_key: &str,
        pg_order_id: &str,
        amount: i64,
    ) -> Result<GatewayPayment, GatewayError> {
        let request = self
            .http
            .post(self.url("/confirm"))
            .header("Idempotency-Key", format!("confirm-{payment_key}"))
            .json(&json!({ "paymentKey": payment_key, "orderId": pg_order_id, "amount": amount }));
        self.send(request).await
    }

    async fn cancel(
        &self,
        payment_key: &str,
        _pg_order_id: &str,
        amount: i64,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<GatewayPayment, GatewayError> {
        let request = self
            .http
            .post(self.url(&format!("/{payment_key}/cancel")))
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({ "cancelReason": reason, "cancelAmount": amount }));
        self.send(request).await
    }

    async fn lookup(&self, payment_key: &str) -> Result<GatewayPayment, GatewayError> {
        self.send(self.http.get(self.url(&format!("/{payment_key}"))))
            .await
    }
}
