//! The API error: the body schema of API.md and the one mapping from error codes to statuses.

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
    code: &'static str,
    message: String,
    details: Vec<FieldError>,
    retry_after_secs: Option<u64>,
}

/// The HTTP status of each error code; the only place that decides it.
fn status_of(code: &str) -> StatusCode {
    match code {
        "bad_request" | "invalid_code" => StatusCode::BAD_REQUEST,
        "unauthorized" | "invalid_credentials" => StatusCode::UNAUTHORIZED,
        "forbidden" | "email_not_verified" => StatusCode::FORBIDDEN,
        "not_found" => StatusCode::NOT_FOUND,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "validation_failed" | "idempotency_mismatch" | "drop_item_in_order" => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "overloaded" | "unavailable" | "outcome_unknown" => StatusCode::SERVICE_UNAVAILABLE,
        "internal_error" => StatusCode::INTERNAL_SERVER_ERROR,
        // Every other code names a conflict with the current state (sold_out, email_taken, ...).
        _ => StatusCode::CONFLICT,
    }
}

impl ApiError {
    /// An error with a stable `code` and a lowercase message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        let retry_after_secs = matches!(
            code,
            "overloaded" | "unavailable" | "outcome_unknown" | "rate_limited"
        )
        .then_some(1);
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after_secs,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new("unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("not_found", message)
    }

    /// 422 with the fields that failed.
    pub fn validation(details: Vec<FieldError>) -> Self {
        let mut error = Self::new("validation_failed", "request failed validation");
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
        Self::new("internal_error", "internal error")
    }

    /// Sets `Retry-After` in seconds.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    /// The `Retry-After` this error answers with, in seconds.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        status_of(self.code)
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
                code: self.code,
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
                Self::new("unavailable", "the store is unavailable")
            }
            StoreError::Invalid(reason) => Self::invalid_field("body", reason),
            StoreError::InDoubt(_) => {
                tracing::warn!(error = %err, "a write's outcome is unknown");
                Self::new(
                    "outcome_unknown",
                    "the write's outcome cannot be told yet: retry with the same Idempotency-Key",
                )
            }
            StoreError::Conflict { .. } => Self::new("conflict", "conflicts with existing data"),
            _ => Self::internal(&err),
        }
    }
}

impl From<DropError> for ApiError {
    fn from(err: DropError) -> Self {
        Self::new(err.code(), err.to_string())
    }
}

impl From<PurchaseError> for ApiError {
    fn from(err: PurchaseError) -> Self {
        match err {
            PurchaseError::Drop(err) => err.into(),
            PurchaseError::NotServed(reason) => reason.into(),
            // The idempotency layer answers a repeat from the store; it never gets this far.
            PurchaseError::Repeat => Self::new("unavailable", "the request failed; retry"),
            PurchaseError::OutcomeUnknown(_) => Self::new(
                "outcome_unknown",
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
                "not_a_drop",
                "this item is not sold in a drop: use POST /orders",
            ),
            NotServed::Closed => Self::new("drop_closed", "drop is closed"),
            NotServed::OtherProcess => Self::new(
                "unavailable",
                "another process on this store sells its drops (one per store until cluster leases exist)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_documented_statuses() {
        let cases = [
            ("bad_request", 400),
            ("unauthorized", 401),
            ("forbidden", 403),
            ("not_found", 404),
            ("sold_out", 409),
            ("limit_reached", 409),
            ("drop_not_open", 409),
            ("drop_closed", 409),
            ("email_taken", 409),
            ("payload_too_large", 413),
            ("unsupported_media_type", 415),
            ("validation_failed", 422),
            ("idempotency_mismatch", 422),
            ("rate_limited", 429),
            ("overloaded", 503),
            ("unavailable", 503),
            ("outcome_unknown", 503),
        ];
        for (code, status) in cases {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
        }
    }

    #[test]
    fn overload_answers_carry_retry_after() {
        let response = ApiError::new("overloaded", "busy").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = ApiError::not_found("no").into_response();
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
