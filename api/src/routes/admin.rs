//! Admin views of the live actors, and the dead letters of the event consumers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use hurry_engine::drop::{DropSlot, ItemStatus};
use serde::Serialize;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, PageQuery};
use crate::state::AppState;
use crate::views::{DeadLetterView, PageRows, PageView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/actors", get(list_actors))
        .route("/admin/actors/{item_id}", get(get_actor))
        .route("/admin/events/dead", get(list_dead_letters))
        .route("/admin/events/dead/{id}/replay", post(replay_dead_letter))
}

#[derive(Serialize)]
struct ActorView {
    item_id: i64,
    /// `running`, or `restarting` between a failure and the successor's start.
    state: &'static str,
    stock_in_memory: i64,
    leased: i64,
    sold: i64,
    pending: i64,
    mailbox_len: usize,
    restarts: u32,
    /// Refusals (sold out, not open, closed) answered without messaging the actor.
    refused_without_actor: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    recent: Option<ItemStatus>,
}

fn view(slot: &Arc<DropSlot>) -> ActorView {
    ActorView {
        item_id: slot.item_id,
        state: if slot.actor().is_some() {
            "running"
        } else {
            "restarting"
        },
        stock_in_memory: slot.available.load(Ordering::Relaxed),
        leased: slot.leased.load(Ordering::Relaxed),
        sold: slot.sold.load(Ordering::Relaxed),
        pending: slot.pending.load(Ordering::Relaxed),
        mailbox_len: slot.queued.load(Ordering::Relaxed),
        restarts: slot.restarts.load(Ordering::Relaxed),
        refused_without_actor: slot.num_refused_in_slot.load(Ordering::Relaxed),
        recent: None,
    }
}

#[derive(Serialize)]
struct ActorsAnswer {
    supervisor: &'static str,
    actors: Vec<ActorView>,
}

async fn list_actors(State(state): State<AppState>, _admin: Admin) -> Json<ActorsAnswer> {
    Json(ActorsAnswer {
        supervisor: "drop_supervisor",
        actors: state.engine.drop_slots().iter().map(view).collect(),
    })
}

async fn get_actor(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(item_id): ApiPath<i64>,
) -> Result<Json<ActorView>, ApiError> {
    let slot = state
        .engine
        .drop_slot(item_id)
        .ok_or_else(|| ApiError::not_found(format!("no actor for item {item_id}")))?;
    let mut answer = view(&slot);
    answer.recent = state.engine.item_status(item_id).await;
    Ok(Json(answer))
}

async fn list_dead_letters(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PageView<DeadLetterView>>, ApiError> {
    let (page, size) = query.validate()?;
    let listing = state.store.dead_letters(page, size).await?;
    Ok(Json(PageView {
        rows: PageRows::DeadLetters(listing.rows.into_iter().map(DeadLetterView::from).collect()),
        page,
        size,
        total: listing.total,
    }))
}

/// Puts the event back in the outbox: every consumer gets it again, and those that had it
/// already skip it by their inbox.
async fn replay_dead_letter(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if !state.store.replay_dead_letter(id).await? {
        return Err(ApiError::not_found(format!("dead letter {id} not found")));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "status": "replaying" })),
    ))
}
