//! `/auth/verify-email` and `/auth/resend-verification`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use hurry_persistence::{CodeAttempt, SealedColumn};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorCode};
use crate::extract::ApiJson;
use crate::routes::auth::normalise_email;
use crate::state::AppState;
use crate::verification::{code_matches, sealed_code};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/verify-email", post(verify_email))
        .route("/auth/resend-verification", post(resend_verification))
}

#[derive(Deserialize)]
struct VerifyBody {
    email: String,
    code: String,
}

fn invalid_code() -> ApiError {
    ApiError::new(ErrorCode::InvalidCode, "the code is wrong, used or expired")
}

/// 200 when the code is the user's live code. Every wrong answer looks the same (unknown
/// email, no code, wrong, used or expired code: 400 `invalid_code`), except a code whose
/// attempts are used up (429): a new code has to be requested.
async fn verify_email(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Json<Value>, ApiError> {
    let email = normalise_email(&body.email);
    state
        .rate_limits
        .verify(peer.ip(), email.as_deref().unwrap_or(body.email.as_str()))?;
    let Some(email) = email else {
        return Err(invalid_code());
    };
    let Some(user) = state
        .store
        .user_by_email_index(&state.pii.email_index(&email))
        .await?
    else {
        return Err(invalid_code());
    };
    if user.email_verified {
        return Ok(Json(json!({ "user_id": user.id, "email_verified": true })));
    }
    let max_attempts = state.settings.auth.email_code_max_attempts.max(1);
    let attempt = state
        .store
        .take_code_attempt(user.id, max_attempts, Utc::now())
        .await?;
    let (sealed, generation) = match attempt {
        CodeAttempt::Granted { code, generation } => (code, generation),
        CodeAttempt::Locked => {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many wrong codes; request a new code",
            )
            .with_retry_after(state.settings.auth.email_code_resend_interval_secs.max(1)))
        }
        CodeAttempt::Unavailable => return Err(invalid_code()),
    };
    if !code_matches(
        &body.code,
        &state.pii.open(&sealed, SealedColumn::EmailCode, user.id)?,
    ) {
        return Err(invalid_code());
    }
    if !state.store.confirm_email(user.id, generation).await? {
        // Replaced or used by a concurrent request meanwhile.
        return Err(invalid_code());
    }
    Ok(Json(json!({ "user_id": user.id, "email_verified": true })))
}

#[derive(Deserialize)]
struct ResendBody {
    email: String,
}

/// Always 202 with the same body, whether or not the email belongs to an unverified account
/// and whether or not a new code went out (at most one per
/// `auth.email_code_resend_interval_secs` per account): the answer tells nothing about
/// accounts. Requests per address are limited (429).
async fn resend_verification(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<ResendBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.rate_limits.resend(peer.ip())?;
    let accepted = (
        StatusCode::ACCEPTED,
        Json(json!({ "status": "if the address has an unverified account, a code is on its way" })),
    );
    let Some(email) = normalise_email(&body.email) else {
        return Ok(accepted);
    };
    let Some(user) = state
        .store
        .user_by_email_index(&state.pii.email_index(&email))
        .await?
    else {
        return Ok(accepted);
    };
    let auth = &state.settings.auth;
    let interval = chrono::Duration::seconds(
        i64::try_from(auth.email_code_resend_interval_secs).unwrap_or(i64::MAX / 4),
    );
    state
        .store
        .renew_email_code(
            user.id,
            &sealed_code(&state.pii, user.id, auth.email_code_ttl_secs),
            interval,
            Utc::now(),
        )
        .await?;
    Ok(accepted)
}
