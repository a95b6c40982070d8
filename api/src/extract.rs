//! Extractors whose rejections speak the API error schema.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use hurry_engine::domain::IdempotencyKey;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode, FieldError};

/// A JSON body: 415 without a JSON content type, 413 past the body limit, 400 when it is not
/// JSON, 422 naming the field when it is JSON of the wrong shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&request) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected content-type application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
                } else {
                    ApiError::bad_request("cannot read the request body")
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn is_json(request: &Request) -> bool {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Parses JSON into `T`, mapping errors to the schema.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if field == "." {
                    "body".to_owned()
                } else {
                    field
                };
                ApiError::validation(vec![FieldError::new(field, data_reason(&inner))])
            }
            _ => ApiError::bad_request(format!("malformed json: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|_| ApiError::bad_request("malformed json: trailing characters"))?;
    Ok(value)
}

/// serde's message without its line and column suffix.
fn data_reason(err: &serde_json::Error) -> String {
    let message = err.to_string();
    match message.rfind(" at line ") {
        Some(position) => message[..position].to_owned(),
        None => message,
    }
}

/// A path parameter: 400 when it does not parse (an id that is not an integer).
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| {
                ApiError::bad_request(format!("bad path: {}", rejection.body_text()))
            })
    }
}

/// A query string: 400 when it does not parse.
#[derive(Debug, Clone, Copy)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                ApiError::bad_request(format!("bad query: {}", rejection.body_text()))
            })
    }
}

/// The optional `Idempotency-Key` header: 422 when present but not 1 to 128 visible ASCII.
#[derive(Debug, Clone)]
pub struct IdempotencyHeader(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyHeader(None));
        };
        value
            .to_str()
            .ok()
            .and_then(IdempotencyKey::new)
            .map(|key| IdempotencyHeader(Some(key)))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "Idempotency-Key",
                    "must be 1 to 128 visible ASCII characters",
                )
            })
    }
}

/// `page` and `size` of a listing.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct PageQuery {
    pub page: Option<i64>,
    pub size: Option<i64>,
}

impl PageQuery {
    /// Validated `(page, size)`: page ≥ 0, size 1..=100, default size 20.
    pub fn validate(self) -> Result<(u32, u32), ApiError> {
        let page = self.page.unwrap_or(0);
        let size = self.size.unwrap_or(20);
        let mut details = Vec::new();
        if !(0..=1_000_000).contains(&page) {
            details.push(FieldError::new("page", "must be between 0 and 1000000"));
        }
        if !(1..=100).contains(&size) {
            details.push(FieldError::new("size", "must be between 1 and 100"));
        }
        if details.is_empty() {
            Ok((page as u32, size as u32))
        } else {
            Err(ApiError::validation(details))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        quantity: i64,
    }

    #[test]
    fn wrong_types_name_the_field_and_syntax_errors_are_bad_requests() {
        let err = parse_json::<Body>(br#"{"quantity": "two"}"#).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ValidationFailed);
        let err = parse_json::<Body>(br#"{"quantity": 1"#).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        let err = parse_json::<Body>(br#"{"quantity": 1} x"#).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        let err = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ValidationFailed);
        assert!(parse_json::<Body>(br#"{"quantity": 1, "extra": true}"#).is_ok());
    }

    #[test]
    fn page_query_bounds() {
        let ok = PageQuery {
            page: None,
            size: None,
        }
        .validate()
        .unwrap();
        assert_eq!(ok, (0, 20));
        for (page, size) in [(Some(-1), None), (None, Some(0)), (None, Some(101))] {
            assert!(PageQuery { page, size }.validate().is_err());
        }
    }
}
