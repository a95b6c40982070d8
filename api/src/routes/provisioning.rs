//! `POST /admin/loadtest/shoppers`: synthetic shoppers for load tests, with access tokens, in
//! bulk. Off unless `loadtest.provisioning_enabled` is true (then admin only); off, the route
//! answers 404 as if it did not exist. One argon2 hash per call (of a random password nobody
//! knows, so the shoppers cannot log in with a password), one store transaction per call.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Most shoppers one call creates.
pub const MAX_PER_CALL: i64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/loadtest/shoppers", post(provision))
}

#[derive(Deserialize)]
struct ProvisionBody {
    count: i64,
}

#[derive(Serialize)]
struct Shopper {
    user_id: i64,
    access_token: String,
}

#[derive(Serialize)]
struct Provisioned {
    shoppers: Vec<Shopper>,
    /// Lifetime of the tokens in seconds.
    expires_in: u64,
}

async fn provision(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(body): ApiJson<ProvisionBody>,
) -> Result<(StatusCode, Json<Provisioned>), ApiError> {
    if !state.settings.loadtest.provisioning_enabled {
        return Err(ApiError::not_found("no such route"));
    }
    if !(1..=MAX_PER_CALL).contains(&body.count) {
        return Err(ApiError::invalid_field(
            "count",
            "must be between 1 and 10000",
        ));
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let password_hash = state
        .passwords
        .hash(hex::encode(secret))
        .await
        .map_err(|err| ApiError::internal(&err))?;
    let batch = uuid::Uuid::new_v4().simple().to_string();
    let name = state.pii.seal("load-test shopper");
    let users: Vec<hurry_persistence::NewUser> = (0..body.count)
        .map(|index| {
            let email = format!("shopper{index}-{batch}@loadtest.invalid");
            hurry_persistence::NewUser {
                email: state.pii.seal(&email),
                email_index: state.pii.email_index(&email),
                password_hash: password_hash.clone(),
                name: name.clone(),
                phone: None,
                address: None,
                email_verified: true,
                extra_roles: Vec::new(),
                verification: None,
            }
        })
        .collect();
    let ids = state.store.create_customers(&users).await?;
    let roles = ["customer".to_owned()];
    let shoppers = ids
        .into_iter()
        .map(|user_id| {
            let access_token = state
                .tokens
                .issue(user_id, &roles, None)
                .map_err(|err| ApiError::internal(&err))?;
            Ok(Shopper {
                user_id,
                access_token,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    state.engine.outbox_written().notify_one();
    Ok((
        StatusCode::CREATED,
        Json(Provisioned {
            shoppers,
            expires_in: state.tokens.ttl_secs,
        }),
    ))
}
