//! The payment gateways: [`PaymentGateway`], what the payment flow asks of a gateway, and its
//! HTTP clients in the shape of Toss Payments ([`toss::TossGateway`]) and NicePay
//! ([`nice::NiceGateway`]). Both speak to the real gateways or to the sandbox, which serves
//! both shapes.

pub mod nice;
pub mod toss;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Where a payment stands at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayStatus {
    /// Checked out, not confirmed: nothing taken.
    Ready,
    /// Money taken (part of it may have been given back: see `refunded_amount`).
    Paid,
    /// Refused or abandoned: nothing taken.
    Failed,
    /// All of it given back.
    Cancelled,
}

/// A payment as the gateway answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPayment {
    pub payment_key: String,
    pub pg_order_id: String,
    pub status: GatewayStatus,
    pub amount: i64,
    pub refunded_amount: i64,
    pub approved_at: Option<DateTime<Utc>>,
}

/// Why a gateway call did not answer a payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Refused for good (a declined card, an unknown payment, a wrong amount): nothing was
    /// taken, and asking again would be refused again.
    #[error("refused by the gateway: {code}: {message}")]
    Refused { code: String, message: String },
    /// Done before (a confirm of a confirmed payment, with another key): look it up.
    #[error("processed before")]
    AlreadyProcessed,
    /// The gateway did not do it (it answered 5xx or 429, or could not be reached): asking
    /// again may work.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// No answer came after the request went out (a timeout, a cut connection): it may have
    /// been done. Only a lookup tells.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The gateway's circuit breaker is open: the call was not made.
    #[error("circuit breaker open")]
    CircuitOpen,
}

impl GatewayError {
    /// Whether the call may be made again as it is (nothing was done, or it is idempotent).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GatewayError::Unavailable(_) | GatewayError::OutcomeUnknown(_)
        )
    }
}

/// What the payment flow asks of a gateway. Confirm and cancel carry an idempotency key: the
/// same call made twice with one key is done once.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// The provider's name (`toss`, `nice`, `sandbox`).
    fn provider(&self) -> &str;

    /// Takes the money of a checked-out payment.
    async fn confirm(
        &self,
        payment_key: &str,
        pg_order_id: &str,
        amount: i64,
    ) -> Result<GatewayPayment, GatewayError>;

    /// Gives `amount` of a paid payment back.
    async fn cancel(
        &self,
        payment_key: &str,
        pg_order_id: &str,
        amount: i64,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<GatewayPayment, GatewayError>;

    /// The payment as the gateway knows it.
    async fn lookup(&self, payment_key: &str) -> Result<GatewayPayment, GatewayError>;

    /// Its circuit breaker's state, when it has one.
    fn breaker_state(&self) -> Option<super::breaker::BreakerState> {
        None
    }

    /// Whether a call may be made now (a half-open breaker lets this one through).
    fn permits_calls(&self) -> bool {
        true
    }
}

/// Where a gateway is and how to call it.
#[derive(Debug, Clone)]
pub struct GatewayEndpoint {
    /// Base URL, without the `/v1` (for the mounted sandbox: `http://HOST:PORT/pg-sandbox/toss`).
    pub base_url: String,
    /// The Basic authorization's `user:password` (Toss: `SECRET_KEY:`; NicePay:
    /// `CLIENT_KEY:SECRET_KEY`).
    pub credentials: String,
    /// Longest wait for one answer.
    pub timeout: Duration,
}

impl GatewayEndpoint {
    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default()
    }

    /// Sends `request` with the Basic authorization; the answer's status and JSON body.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, serde_json::Value), GatewayError> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, self.authorization())
            .send()
            .await
            .map_err(|err| request_error(&err))?;
        json_body(response).await
    }

    fn authorization(&self) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&self.credentials)
        )
    }
}

/// What a failed request tells: nothing sent (unreachable), or sent with no answer.
fn request_error(err: &reqwest::Error) -> GatewayError {
    if err.is_connect() {
        GatewayError::Unavailable(format!("cannot reach the gateway: {err}"))
    } else {
        GatewayError::OutcomeUnknown(format!("no answer: {err}"))
    }
}

/// Reads an answer's JSON body; one that cannot be read leaves the outcome unknown.
async fn json_body(
    response: reqwest::Response,
) -> Result<(reqwest::StatusCode, serde_json::Value), GatewayError> {
    let status = response.status();
    let body = response
        .json::<serde_json::Value>()
        .await
        .map_err(|err| GatewayError::OutcomeUnknown(format!("unreadable answer: {err}")))?;
    Ok((status, body))
}

fn text(body: &serde_json::Value, field: &str) -> String {
    body[field].as_str().unwrap_or_default().to_owned()
}

fn time(body: &serde_json::Value, field: &str) -> Option<DateTime<Utc>> {
    body[field]
        .as_str()
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.with_timezone(&Utc))
}
