//! `/auth/signup`, `/auth/login`, refresh, logout and role grants.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use hurry_persistence::{
    NewRefreshToken, NewUser, RefreshSuccessor, RefreshUse, SealedColumn, StoreError,
};
use serde::{Deserialize, Serialize};

use crate::auth::sessions::{hash_refresh_token, RefreshSecret};
use crate::auth::{Admin, AuthUser};
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::verification::sealed_code;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/signup", post(signup))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/admin/users/{id}/roles", post(grant_roles))
}

#[derive(Deserialize)]
struct SignupBody {
    email: String,
    password: String,
    name: String,
    phone: Option<String>,
    address: Option<String>,
}

#[derive(Serialize)]
struct SignupAnswer {
    user_id: i64,
    email: String,
    email_verified: bool,
}

/// Lowercased, trimmed email if it looks like one.
pub fn normalise_email(email: &str) -> Option<String> {
    let email = email.trim().to_ascii_lowercase();
    let (local, domain) = email.split_once('@')?;
    let valid = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@');
    valid.then_some(email)
}

/// Adds a detail when `password` is not 8 to 128 characters.
pub fn check_password(password: &str, details: &mut Vec<FieldError>) {
    let length = password.chars().count();
    if !(8..=128).contains(&length) {
        details.push(FieldError::new("password", "must be 8 to 128 characters"));
    }
}

/// Adds a detail when `value` is too long or holds control characters.
pub fn check_text(field: &str, value: Option<&str>, max: usize, details: &mut Vec<FieldError>) {
    if let Some(value) = value {
        if value.chars().count() > max || value.chars().any(char::is_control) {
            details.push(FieldError::new(
                field,
                format!("must be at most {max} characters without control characters"),
            ));
        }
    }
}

async fn signup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<SignupBody>,
) -> Result<(StatusCode, Json<SignupAnswer>), ApiError> {
    state.rate_limits.signup(peer.ip())?;
    let mut details = Vec::new();
    let email = normalise_email(&body.email);
    if email.is_none() {
        details.push(FieldError::new("email", "must be an email address"));
    }
    check_password(&body.password, &mut details);
    if body.name.trim().is_empty() {
        details.push(FieldError::new("name", "must not be empty"));
    }
    check_text("name", Some(&body.name), 100, &mut details);
    check_text("phone", body.phone.as_deref(), 32, &mut details);
    check_text("address", body.address.as_deref(), 500, &mut details);
    let Some(email) = email.filter(|_| details.is_empty()) else {
        return Err(ApiError::validation(details));
    };
    let password_hash = state
        .passwords
        .hash(body.password)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let verified = !state.settings.auth.require_email_verification;
    // The id comes first: every sealed field is bound to its row.
    let id = state.store.allocate_ids("users", 1).await?;
    let verification =
        (!verified).then(|| sealed_code(&state.pii, id, state.settings.auth.email_code_ttl_secs));
    let pii = &state.pii;
    let user = NewUser {
        id,
        email: pii.seal(&email, SealedColumn::UserEmail, id),
        email_index: pii.email_index(&email),
        password_hash,
        name: pii.seal(body.name.trim(), SealedColumn::UserName, id),
        phone: pii.seal_opt(body.phone.as_deref(), SealedColumn::UserPhone, id),
        address: pii.seal_opt(body.address.as_deref(), SealedColumn::UserAddress, id),
        email_verified: verified,
        extra_roles: Vec::new(),
        verification,
    };
    let created = state
        .store
        .create_user(&user)
        .await
        .map_err(|err| match err {
            StoreError::Conflict { .. } => {
                ApiError::new(ErrorCode::EmailTaken, "this email is already registered")
            }
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(SignupAnswer {
            user_id: created.id,
            email,
            email_verified: created.email_verified,
        }),
    ))
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

/// A token pair: the answer of login and refresh.
#[derive(Serialize)]
pub struct TokenPair {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// The refresh tokens' lifetime from now.
fn refresh_expiry(state: &AppState) -> DateTime<Utc> {
    let ttl = chrono::Duration::seconds(
        i64::try_from(state.settings.auth.refresh_token_ttl_secs).unwrap_or(i64::MAX / 4),
    );
    Utc::now() + ttl
}

/// Stores a new refresh token in `family` and signs an access token for the same session.
async fn issue_pair(
    state: &AppState,
    user_id: i64,
    roles: &[String],
    family: &str,
) -> Result<TokenPair, ApiError> {
    let secret = RefreshSecret::generate();
    state
        .store
        .insert_refresh_token(&NewRefreshToken {
            token_hash: secret.hash.clone(),
            user_id,
            family_id: family.to_owned(),
            expires_at: refresh_expiry(state),
        })
        .await?;
    pair(state, user_id, roles, family, secret)
}

/// The answer for refresh token `secret` (already stored) in `family`, with a new access token.
fn pair(
    state: &AppState,
    user_id: i64,
    roles: &[String],
    family: &str,
    secret: RefreshSecret,
) -> Result<TokenPair, ApiError> {
    let access_token = state
        .tokens
        .issue(user_id, roles, Some(family))
        .map_err(|err| ApiError::internal(&err))?;
    Ok(TokenPair {
        access_token,
        refresh_token: secret.token,
        token_type: "Bearer",
        expires_in: state.tokens.ttl_secs,
    })
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<TokenPair>, ApiError> {
    state
        .rate_limits
        .login(peer.ip(), &body.email.trim().to_ascii_lowercase())?;
    let user = match normalise_email(&body.email) {
        Some(email) => {
            state
                .store
                .user_by_email_index(&state.pii.email_index(&email))
                .await?
        }
        None => None,
    };
    let stored = user.as_ref().map(|user| user.password_hash.clone());
    let matches = state
        .passwords
        .verify(body.password, stored)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let user = match user {
        Some(user) if matches => user,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidCredentials,
                "email or password is wrong",
            ))
        }
    };
    if state.settings.auth.require_email_verification && !user.email_verified {
        return Err(ApiError::new(
            ErrorCode::EmailNotVerified,
            "verify your email first",
        ));
    }
    let family = uuid::Uuid::new_v4().to_string();
    Ok(Json(
        issue_pair(&state, user.id, &user.roles, &family).await?,
    ))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<TokenPair>, ApiError> {
    let hash = hash_refresh_token(&body.refresh_token);
    // The successor is stored by the rotation itself: a revocation of the family that commits
    // after it revokes the successor too.
    let secret = RefreshSecret::generate();
    let successor = RefreshSuccessor {
        token_hash: secret.hash.clone(),
        expires_at: refresh_expiry(&state),
    };
    match state
        .store
        .use_refresh_token(&hash, &successor, Utc::now())
        .await?
    {
        RefreshUse::Rotated { user_id, family_id } => {
            let user = state
                .store
                .user_by_id(user_id)
                .await?
                .ok_or_else(|| ApiError::unauthorized("refresh token is not valid"))?;
            Ok(Json(pair(
                &state,
                user.id,
                &user.roles,
                &family_id,
                secret,
            )?))
        }
        RefreshUse::Reused { user_id, family_id } => {
            tracing::warn!(user_id, %family_id, "refresh token reused: family revoked");
            Err(ApiError::unauthorized("refresh token was already used"))
        }
        RefreshUse::Invalid => Err(ApiError::unauthorized("refresh token is not valid")),
    }
}

async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    let hash = hash_refresh_token(&body.refresh_token);
    // A refresh token of somebody else revokes nothing (and says nothing about it).
    state.store.revoke_family_of(user.id, &hash).await?;
    let expires_at = DateTime::from_timestamp(user.exp, 0).unwrap_or_else(Utc::now);
    state
        .revocations
        .deny(&state.store, &user.jti, expires_at)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct RolesBody {
    roles: Vec<String>,
}

#[derive(Serialize)]
struct RolesAnswer {
    user_id: i64,
    roles: Vec<String>,
}

async fn grant_roles(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(user_id): ApiPath<i64>,
    ApiJson(body): ApiJson<RolesBody>,
) -> Result<Json<RolesAnswer>, ApiError> {
    const KNOWN: [&str; 3] = ["customer", "seller", "admin"];
    if body.roles.is_empty()
        || body
            .roles
            .iter()
            .any(|role| !KNOWN.contains(&role.as_str()))
    {
        return Err(ApiError::invalid_field(
            "roles",
            "must list roles among customer, seller, admin",
        ));
    }
    let roles = state
        .store
        .grant_roles(user_id, &body.roles)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(Json(RolesAnswer { user_id, roles }))
}
#[cfg(test)]
mod tests {
    use super::normalise_email;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(normalise_email(" A@B.co ").as_deref(), Some("a@b.co"));
        for bad in [
            "", "a", "a@", "@b.co", "a@b", "a@.co", "a@b.", "a b@c.co", "a@b@c.co",
        ] {
            assert!(normalise_email(bad).is_none(), "{bad:?} must be refused");
        }
    }
}
