//! The caller's own account: profile and password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use hurry_engine::domain::OrderStatus;
use hurry_engine::payment::PaymentError;
use hurry_persistence::{now_micros, ProfileChange, SealedColumn, UserRecord};
use serde::{Deserialize, Serialize};

use super::auth::{check_password, check_text};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/me", get(get_me).patch(patch_me).delete(delete_me))
        .route("/users/me/password", put(change_password))
}

#[derive(Serialize)]
struct Profile {
    user_id: i64,
    email: String,
    name: String,
    phone: Option<String>,
    address: Option<String>,
    roles: Vec<String>,
    email_verified: bool,
}

impl From<UserRecord> for Profile {
    fn from(user: UserRecord) -> Self {
        Self {
            user_id: user.id,
            email: user.email,
            name: user.name,
            phone: user.phone,
            address: user.address,
            roles: user.roles,
            email_verified: user.email_verified,
        }
    }
}

/// The caller's stored account, personal fields still sealed.
async fn me(state: &AppState, user: &AuthUser) -> Result<UserRecord, ApiError> {
    state
        .store
        .user_by_id(user.id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("this account no longer exists"))
}

async fn get_me(State(state): State<AppState>, user: AuthUser) -> Result<Json<Profile>, ApiError> {
    Ok(Json(state.pii.open_user(me(&state, &user).await?)?.into()))
}

#[derive(Deserialize)]
struct ProfileBody {
    name: Option<String>,
    phone: Option<String>,
    address: Option<String>,
}

async fn patch_me(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<Json<Profile>, ApiError> {
    let mut details = Vec::new();
    let name = body.name.map(|name| name.trim().to_owned());
    if name.as_deref().is_some_and(str::is_empty) {
        details.push(FieldError::new("name", "must not be empty"));
    }
    check_text("name", name.as_deref(), 100, &mut details);
    check_text("phone", body.phone.as_deref(), 32, &mut details);
    check_text("address", body.address.as_deref(), 500, &mut details);
    if !details.is_empty() {
        return Err(ApiError::validation(details));
    }
    let change = ProfileChange {
        name: state
            .pii
            .seal_opt(name.as_deref(), SealedColumn::UserName, user.id),
        phone: state
            .pii
            .seal_opt(body.phone.as_deref(), SealedColumn::UserPhone, user.id),
        address: state
            .pii
            .seal_opt(body.address.as_deref(), SealedColumn::UserAddress, user.id),
    };
    let updated = state
        .store
        .update_profile(user.id, &change)
        .await?
        .ok_or_else(|| ApiError::unauthorized("this account no longer exists"))?;
    Ok(Json(state.pii.open_user(updated)?.into()))
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let mut details = Vec::new();
    check_password(&body.new_password, &mut details);
    if !details.is_empty() {
        for detail in &mut details {
            detail.field = "new_password".to_owned();
        }
        return Err(ApiError::validation(details));
    }
    let account = me(&state, &user).await?;
    let matches = state
        .passwords
        .verify(body.current_password, Some(account.password_hash))
        .await
        .map_err(|err| ApiError::internal(&err))?;
    if !matches {
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    let hash = state
        .passwords
        .hash(body.new_password)
        .await
        .map_err(|err| ApiError::internal(&err))?;
    // Every access token issued so far is refused (this one too: the session goes on through
    // its refresh token), and every other session ends.
    let changed_at = now_micros();
    state
        .store
        .set_password_hash(user.id, &hash, changed_at)
        .await?;
    state
        .revocations
        .refuse_tokens_before(user.id, changed_at)
        .await;
    state
        .store
        .revoke_user_families(user.id, user.family.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct DeleteBody {
    password: String,
}

/// Deletes the caller's account: open orders are cancelled (their units go back to the drop),
/// personal data is shredded, every session ends; the order history stays for the sellers.
async fn delete_me(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<DeleteBody>,
) -> Result<StatusCode, ApiError> {
    let account = me(&state, &user).await?;
    let matches = state
        .passwords
        .verify(body.password, Some(account.password_hash))
        .await
        .map_err(|err| ApiError::internal(&err))?;
    if !matches {
        return Err(ApiError::new(
            ErrorCode::InvalidCredentials,
            "the password is wrong",
        ));
    }
    // Cancel first: a failure here leaves the account as it was, and a retry is safe (an
    // order cancelled meanwhile, or shipped, is skipped). Paid orders are refunded.
    for status in [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::Preparing,
    ] {
        for order in state
            .store
            .orders_in_status(user.id, status.as_str())
            .await?
        {
            match state.payments.cancel(order.id).await {
                Ok(_) | Err(PaymentError::NotCancellable(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    state
        .store
        .delete_user(
            user.id,
            &state.pii.seal("", SealedColumn::UserEmail, user.id),
            &format!("deleted:{}", user.id),
        )
        .await?;
    state.revocations.deny_user(user.id).await;
    Ok(StatusCode::NO_CONTENT)
}
