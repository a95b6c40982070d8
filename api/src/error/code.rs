//! The error codes of the API (API.md's `error.code`): each one's text, HTTP status and
//! whether its answer carries `Retry-After`, each decided by one `match`.

use axum::http::StatusCode;

/// Declares [`ErrorCode`] and [`ErrorCode::ALL`] from one list, so that `ALL` cannot miss a
/// variant (the tests walk it to check every code against the contract).
macro_rules! error_codes {
    ($($(#[$meta:meta])* $variant:ident,)+) => {
        /// A stable error code. A code the API does not know does not compile; the code text,
        /// the status and `Retry-After` come from [`ErrorCode::as_str`], [`ErrorCode::status`]
        /// and [`ErrorCode::carries_retry_after`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$meta])* $variant,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];
        }
    };
}

error_codes! {
    /// 400: a malformed body, path or query.
    BadRequest,
    /// 400: an email verification code that is wrong, used or expired.
    InvalidCode,
    /// 401: a missing or bad token.
    Unauthorized,
    /// 401: a wrong email or password.
    InvalidCredentials,
    /// 403: authenticated but not allowed.
    Forbidden,
    /// 403: login before the email is verified.
    EmailNotVerified,
    /// 404: absent or not yours.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: a write clashed with existing data.
    Conflict,
    /// 409: signup with an email already registered.
    EmailTaken,
    /// 409: fewer units than asked for.
    InsufficientStock,
    /// 409: a drop with no units left.
    SoldOut,
    /// 409: the user holds as many units as the drop allows.
    LimitReached,
    /// 409: the drop's window has not opened yet.
    DropNotOpen,
    /// 409: the drop's window has closed.
    DropClosed,
    /// 409: a drop purchase of an item that is not sold in a drop.
    NotADrop,
    /// 409: a confirm's amount is not the payment's (nothing is charged).
    AmountMismatch,
    /// 409: the order stopped waiting for payment (expired or cancelled; nothing is charged,
    /// or a charge that landed meanwhile is refunded).
    OrderExpired,
    /// 409: the order has shipped or ended and cannot be cancelled.
    NotCancellable,
    /// 409: the order is not delivered, or its return window is over.
    NotReturnable,
    /// 413: the body is larger than the limit.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 422: fields failed validation (listed in `details`).
    ValidationFailed,
    /// 422: an `Idempotency-Key` reused with a different request.
    IdempotencyMismatch,
    /// 422: a general order naming an item that is sold in a drop.
    DropItemInOrder,
    /// 429: rate limited.
    RateLimited,
    /// 503: too many purchases waiting for a drop.
    Overloaded,
    /// 503: a dependency is down or did not answer.
    Unavailable,
    /// 503: a write's commit cannot be told yet (DESIGN I8).
    OutcomeUnknown,
    /// 500: a bug; the body is opaque.
    InternalError,
}

impl ErrorCode {
    /// The code text of the error body, a stable snake_case word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidCode => "invalid_code",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::EmailNotVerified => "email_not_verified",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::EmailTaken => "email_taken",
            Self::InsufficientStock => "insufficient_stock",
            Self::SoldOut => "sold_out",
            Self::LimitReached => "limit_reached",
            Self::DropNotOpen => "drop_not_open",
            Self::DropClosed => "drop_closed",
            Self::NotADrop => "not_a_drop",
            Self::AmountMismatch => "amount_mismatch",
            Self::OrderExpired => "order_expired",
            Self::NotCancellable => "not_cancellable",
            Self::NotReturnable => "not_returnable",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ValidationFailed => "validation_failed",
            Self::IdempotencyMismatch => "idempotency_mismatch",
            Self::DropItemInOrder => "drop_item_in_order",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::InternalError => "internal_error",
        }
    }

    /// The HTTP status of an answer with this code; the only place that decides it.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::InvalidCode => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::EmailNotVerified => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict
            | Self::EmailTaken
            | Self::InsufficientStock
            | Self::SoldOut
            | Self::LimitReached
            | Self::DropNotOpen
            | Self::DropClosed
            | Self::NotADrop
            | Self::AmountMismatch
            | Self::OrderExpired
            | Self::NotCancellable
            | Self::NotReturnable => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ValidationFailed | Self::IdempotencyMismatch | Self::DropItemInOrder => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded | Self::Unavailable | Self::OutcomeUnknown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether an answer with this code carries `Retry-After`: the refusals that a retry
    /// may get past.
    pub const fn carries_retry_after(self) -> bool {
        match self {
            Self::RateLimited | Self::Overloaded | Self::Unavailable | Self::OutcomeUnknown => true,
            Self::BadRequest
            | Self::InvalidCode
            | Self::Unauthorized
            | Self::InvalidCredentials
            | Self::Forbidden
            | Self::EmailNotVerified
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::Conflict
            | Self::EmailTaken
            | Self::InsufficientStock
            | Self::SoldOut
            | Self::LimitReached
            | Self::DropNotOpen
            | Self::DropClosed
            | Self::NotADrop
            | Self::AmountMismatch
            | Self::OrderExpired
            | Self::NotCancellable
            | Self::NotReturnable
            | Self::PayloadTooLarge
            | Self::UnsupportedMediaType
            | Self::ValidationFailed
            | Self::IdempotencyMismatch
            | Self::DropItemInOrder
            | Self::InternalError => false,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// What clients see, written out independently of the code above: API.md's codes and
    /// statuses, and the codes it does not name but that the API answers today (`conflict`,
    /// `not_a_drop`, `drop_item_in_order`, `method_not_allowed`, the 413 and 415 texts,
    /// `internal_error`). `true` when the answer carries `Retry-After`.
    const CONTRACT: &[(&str, u16, bool)] = &[
        ("bad_request", 400, false),
        ("invalid_code", 400, false),
        ("unauthorized", 401, false),
        ("invalid_credentials", 401, false),
        ("forbidden", 403, false),
        ("email_not_verified", 403, false),
        ("not_found", 404, false),
        ("method_not_allowed", 405, false),
        ("conflict", 409, false),
        ("email_taken", 409, false),
        ("insufficient_stock", 409, false),
        ("sold_out", 409, false),
        ("limit_reached", 409, false),
        ("drop_not_open", 409, false),
        ("drop_closed", 409, false),
        ("not_a_drop", 409, false),
        ("amount_mismatch", 409, false),
        ("order_expired", 409, false),
        ("not_cancellable", 409, false),
        ("not_returnable", 409, false),
        ("payload_too_large", 413, false),
        ("unsupported_media_type", 415, false),
        ("validation_failed", 422, false),
        ("idempotency_mismatch", 422, false),
        ("drop_item_in_order", 422, false),
        ("rate_limited", 429, true),
        ("overloaded", 503, true),
        ("unavailable", 503, true),
        ("outcome_unknown", 503, true),
        ("internal_error", 500, false),
    ];

    #[test]
    fn every_code_answers_the_status_and_retry_after_of_the_contract() {
        for code in ErrorCode::ALL {
            let row = CONTRACT.iter().find(|(text, ..)| *text == code.as_str());
            let Some(&(text, status, retry_after)) = row else {
                panic!("{code:?} answers `{code}`, which the contract does not list");
            };
            assert_eq!(code.status().as_u16(), status, "status of {text}");
            assert_eq!(
                code.carries_retry_after(),
                retry_after,
                "Retry-After of {text}"
            );
        }
        for (text, ..) in CONTRACT {
            assert!(
                ErrorCode::ALL.iter().any(|code| code.as_str() == *text),
                "no variant answers `{text}`"
            );
        }
    }

    #[test]
    fn code_texts_are_unique_snake_case_words_named_like_their_variant() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "`{text}` is the text of two codes");
            assert!(
                !text.is_empty()
                    && text
                        .bytes()
                        .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
                    && !text.starts_with('_')
                    && !text.ends_with('_')
                    && !text.contains("__"),
                "`{text}` is not snake_case"
            );
            assert_eq!(text, snake_case(&format!("{code:?}")), "text of {code:?}");
        }
    }

    #[test]
    fn only_retryable_refusals_carry_retry_after() {
        for code in ErrorCode::ALL {
            if code.carries_retry_after() {
                let status = code.status();
                assert!(
                    status == StatusCode::TOO_MANY_REQUESTS
                        || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{code} carries Retry-After with {status}"
                );
            }
        }
    }

    /// `SoldOut` -> `sold_out`, `NotADrop` -> `not_a_drop`.
    fn snake_case(name: &str) -> String {
        let mut snake = String::new();
        for character in name.chars() {
            if character.is_ascii_uppercase() && !snake.is_empty() {
                snake.push('_');
            }
            snake.push(character.to_ascii_lowercase());
        }
        snake
    }
}
