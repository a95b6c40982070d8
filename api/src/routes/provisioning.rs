//! Load-test routes, off unless `loadtest.provisioning_enabled` is true (then admin only); off,
//! they answer 404 as if they did not exist.
//!
//! - `POST /admin/loadtest/shoppers`: synthetic shoppers with access tokens, in bulk. One
//!   argon2 hash per call (of a random password nobody knows, so the shoppers cannot log in
//!   with a password), one store transaction per call.
//! - `GET /admin/loadtest/drops/{item_id}`: the audit of a drop at the end of a run: every
//!   order with a line for it, from the store, and the units the running stock strategy still
//!   counts as sellable.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hurry_persistence::SealedColumn;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// Most shoppers one call creates.
pub const MAX_PER_CALL: i64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/loadtest/shoppers", post(provision))
        .route("/admin/loadtest/drops/{item_id}", get(audit_drop))
}

/// 404 unless load-test routes are on.
fn ensure_enabled(state: &AppState) -> Result<(), ApiError> {
    if state.settings.loadtest.provisioning_enabled {
        Ok(())
    } else {
        Err(ApiError::not_found("no such route"))
    }
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
    ensure_enabled(&state)?;
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
    let count = u32::try_from(body.count).expect("checked above: 1 to 10000");
    let first = state.store.allocate_ids("users", count).await?;
    let users: Vec<hurry_persistence::NewUser> = (0..body.count)
        .map(|index| {
            let id = first + index;
            let email = format!("shopper{index}-{batch}@loadtest.invalid");
            hurry_persistence::NewUser {
                id,
                email: state.pii.seal(&email, SealedColumn::UserEmail, id),
                email_index: state.pii.email_index(&email),
                password_hash: password_hash.clone(),
                name: state
                    .pii
                    .seal("load-test shopper", SealedColumn::UserName, id),
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
    Ok((
        StatusCode::CREATED,
        Json(Provisioned {
            shoppers,
            expires_in: state.tokens.ttl_secs,
        }),
    ))
}

#[derive(Serialize)]
struct DropAudit {
    item_id: i64,
    /// `engine.stock_strategy` of this node.
    strategy: &'static str,
    total_units: i64,
    per_user_limit: u32,
    /// Units still sellable according to the strategy; `null` when unknown.
    available: Option<i64>,
    /// Events committed on the whole store and not yet published (the harness waits for 0
    /// before the load, so the shoppers' signup events do not compete with the drop).
    outbox_backlog: u64,
    orders: Vec<AuditedOrder>,
}

#[derive(Serialize)]
struct AuditedOrder {
    id: i64,
    user_id: i64,
    quantity: i64,
    status: String,
    idempotency_key: Option<String>,
}

async fn audit_drop(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(item_id): ApiPath<i64>,
) -> Result<Json<DropAudit>, ApiError> {
    ensure_enabled(&state)?;
    let spec = state
        .store
        .item_by_id(item_id)
        .await?
        .and_then(|item| item.drop)
        .ok_or_else(|| ApiError::not_found(format!("no drop for item {item_id}")))?;
    let available = state.seller.available(item_id).await;
    let outbox_backlog = state.store.outbox_backlog().await?;
    let orders = state
        .store
        .drop_orders(item_id)
        .await?
        .into_iter()
        .map(|order| AuditedOrder {
            id: order.id,
            user_id: order.user_id,
            quantity: order.quantity,
            status: order.status,
            idempotency_key: order.idempotency_key,
        })
        .collect();
    Ok(Json(DropAudit {
        item_id,
        strategy: state.settings.engine.stock_strategy.as_str(),
        total_units: spec.total_units,
        per_user_limit: spec.per_user_limit,
        available,
        outbox_backlog,
        orders,
    }))
}
