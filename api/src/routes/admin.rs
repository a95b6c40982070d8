//! Admin views of the live actors.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use hurry_engine::drop::{DropSlot, ItemStatus};
use serde::Serialize;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/actors", get(list_actors))
        .route("/admin/actors/{item_id}", get(get_actor))
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
