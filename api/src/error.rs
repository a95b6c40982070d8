//! The API error: the body schema of API.md, with an [`ErrorCode`] that decides its status and
//! `Retry-After` (in [`code`]), and the conversions of engine and store errors.

mod code;

pub use code::ErrorCode;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hurry_engine::drop::DropError;
use hurry_engine::{NotServed, PurchaseError};
use hurry_persistence::StoreError;
use serde::Serialize;

/// One field that failed validation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// An error answer: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    details: Vec<FieldError>,
    retry_after_secs: Option<u64>,
}

/// The `Retry-After` of a code that carries one, unless the error sets its own.
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    /// An error with a stable `code` and a lowercase message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let retry_after_secs = code
            .carries_retry_after()
            .then_some(DEFAULT_RETRY_AFTER_SECS);
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after_secs,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 422 with the fields that failed.
    pub fn validation(details: Vec<FieldError>) -> Self {
        let mut error = Self::new(ErrorCode::ValidationFailed, "request failed validation");
        error.details = details;
        error
    }

    /// 422 for a single field.
    pub fn invalid_field(field: &str, reason: &str) -> Self {
        Self::validation(vec![FieldError::new(field, reason)])
    }

    /// 500 with an opaque body; the cause is logged here, once.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, chain = ?ErrorChain(cause), "internal error");
        Self::new(ErrorCode::InternalError, "internal error")
    }

    /// Sets `Retry-After` in seconds (for a code that carries one).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        debug_assert!(
            self.code.carries_retry_after(),
            "{} with Retry-After",
            self.code
        );
        self.retry_after_secs = Some(seconds);
        self
    }

    /// The `Retry-After` this error answers with, in seconds.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status (the code's).
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

/// Formats an error's source chain for the log.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = formatter.debug_list();
        let mut source = self.0.source();
        while let Some(cause) = source {
            list.entry(&cause.to_string());
            source = cause.source();
        }
        list.finish()
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    details: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code.as_str(),
                message: &self.message,
                details: &self.details,
            },
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response();
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::Database(_) => {
                tracing::warn!(error = %err, cause = ?ErrorChain(&err), "store unavailable");
                Self::new(ErrorCode::Unavailable, "the store is unavailable")
            }
            StoreError::Invalid(reason) => Self::invalid_field("body", reason),
            StoreError::InDoubt(_) => {
                tracing::warn!(error = %err, "a write's outcome is unknown");
                Self::new(
                    ErrorCode::OutcomeUnknown,
                    "the write's outcome cannot be told yet: retry with the same Idempotency-Key",
                )
            }
            StoreError::Conflict { .. } => {
                Self::new(ErrorCode::Conflict, "conflicts with existing data")
            }
            _ => Self::internal(&err),
        }
    }
}

/// The code of each refusal of a drop. Its text is the engine's [`DropError::code`] too (the
/// `outcome` label of its metrics); a test keeps the two the same.
impl From<&DropError> for ErrorCode {
    fn from(err: &DropError) -> Self {
        match err {
            DropError::SoldOut => Self::SoldOut,
            DropError::InsufficientStock { .. } => Self::InsufficientStock,
            DropError::LimitReached { .. } => Self::LimitReached,
            DropError::NotOpen { .. } => Self::DropNotOpen,
            DropError::Closed => Self::DropClosed,
            DropError::Overloaded => Self::Overloaded,
            DropError::Unavailable => Self::Unavailable,
        }
    }
}

impl From<DropError> for ApiError {
    fn from(err: DropError) -> Self {
        Self::new(ErrorCode::from(&err), err.to_string())
    }
}

impl From<PurchaseError> for ApiError {
    fn from(err: PurchaseError) -> Self {
        match err {
            PurchaseError::Drop(err) => err.into(),
            PurchaseError::NotServed(reason) => reason.into(),
            // The idempotency layer answers a repeat from the store; it never gets this far.
            PurchaseError::Repeat => Self::new(ErrorCode::Unavailable, "the request failed; retry"),
            PurchaseError::OutcomeUnknown(_) => Self::new(
                ErrorCode::OutcomeUnknown,
                "the order's commit cannot be told yet: retry with the same Idempotency-Key",
            ),
        }
    }
}

impl From<NotServed> for ApiError {
    fn from(reason: NotServed) -> Self {
        match reason {
            NotServed::UnknownItem => Self::not_found("item not found"),
            NotServed::NotADrop => Self::new(
                ErrorCode::NotADrop,
                "this item is not sold in a drop: use POST /orders",
            ),
            NotServed::Closed => Self::new(ErrorCode::DropClosed, "drop is closed"),
            NotServed::OtherProcess => Self::new(
                ErrorCode::Unavailable,
                "another process on this store sells its drops (one per store until cluster leases exist)",
            ),
        }
    }
}

impl From<hurry_engine::payment::PaymentError> for ApiError {
    fn from(err: hurry_engine::payment::PaymentError) -> Self {
        use hurry_engine::payment::PaymentError;
        let code = match &err {
            PaymentError::NotFound => ErrorCode::NotFound,
            PaymentError::AmountMismatch => ErrorCode::AmountMismatch,
            PaymentError::OrderExpired => ErrorCode::OrderExpired,
            PaymentError::NotCancellable(_) => ErrorCode::NotCancellable,
            PaymentError::NotReturnable(_) => ErrorCode::NotReturnable,
            PaymentError::NotPayable(_) | PaymentError::OtherKey => ErrorCode::Conflict,
            PaymentError::Unavailable => ErrorCode::Unavailable,
            PaymentError::OutcomeUnknown => {
                return Self::new(
                    ErrorCode::OutcomeUnknown,
                    "the payment's outcome cannot be told yet: confirm again to learn it",
                )
            }
            PaymentError::Store(_) => {
                let PaymentError::Store(store) = err else {
                    unreachable!("matched above")
                };
                return store.into();
            }
        };
        Self::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    async fn answer(error: ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|value| value.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, retry_after, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_code_answers_its_text_status_and_retry_after() {
        for &code in ErrorCode::ALL {
            let (status, retry_after, body) = answer(ApiError::new(code, "why")).await;
            assert_eq!(status, code.status(), "{code}");
            let expected_retry_after = code.carries_retry_after().then(|| "1".to_owned());
            assert_eq!(retry_after, expected_retry_after, "{code}");
            let expected_body = serde_json::json!(
                {"error": {"code": code.as_str(), "message": "why", "details": []}}
            );
            assert_eq!(body, expected_body);
        }
    }

    #[tokio::test]
    async fn an_error_may_set_its_own_retry_after() {
        let limited = ApiError::new(ErrorCode::RateLimited, "slow down").with_retry_after(30);
        let (status, retry_after, _) = answer(limited).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry_after.as_deref(), Some("30"));
    }

    #[test]
    fn drop_refusals_answer_the_engines_code_text() {
        let refusals = [
            DropError::SoldOut,
            DropError::InsufficientStock { available: 1 },
            DropError::LimitReached { limit: 2 },
            DropError::NotOpen {
                opens_at: Utc::now(),
            },
            DropError::Closed,
            DropError::Overloaded,
            DropError::Unavailable,
        ];
        for refusal in refusals {
            let error = ApiError::from(refusal.clone());
            assert_eq!(error.code().as_str(), refusal.code(), "{refusal:?}");
            assert_eq!(error.message, refusal.to_string());
        }
    }
}
