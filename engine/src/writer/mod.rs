//! Group commit: order drafts from many purchases are written in one transaction per batch.
//!
//! - [`actor`]: [`WriterActor`], which collects drafts by size or by a short window and commits.
//! - [`ids`]: [`IdAllocator`], which hands out order ids in blocks reserved in the store.

pub mod actor;
pub mod ids;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use hurry_persistence::{IdempotencyEntry, NewOrder, OrderLine, OrderRecord};
use ractor::{ActorRef, RpcReplyPort};

pub use actor::{WriterActor, WriterArgs, WriterConfig};
pub use ids::IdAllocator;

use crate::domain::{OrderStatus, Quantity};
use crate::drop::{DropError, DropSlot, ItemMessage};

/// An order before it has an id.
#[derive(Debug, Clone)]
pub struct DraftOrder {
    pub user_id: i64,
    pub status: OrderStatus,
    pub amount: i64,
    pub payment_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub lines: Vec<OrderLine>,
    pub idempotency: Option<IdempotencyEntry>,
}

impl DraftOrder {
    /// The order to write under `id`.
    pub fn with_id(&self, id: i64) -> NewOrder {
        NewOrder {
            id,
            user_id: self.user_id,
            status: self.status.as_str().to_owned(),
            amount: self.amount,
            payment_due_at: self.payment_due_at,
            created_at: self.created_at,
            lines: self.lines.clone(),
            idempotency: self.idempotency.clone(),
        }
    }
}

/// Whom to tell once a draft is known to be committed or not. Dropping an unsettled
/// settlement settles it as not committed (a writer that dies with drafts in its buffer gives
/// their units back this way), unless its batch had already gone to the store: then the
/// outcome is unknown, so the units stay held and only the in-flight count is released, so
/// that a restarted item actor can recount from the store.
#[derive(Debug)]
pub struct Settlement {
    target: Option<SettleTarget>,
    committing: bool,
}

#[derive(Debug)]
enum SettleTarget {
    /// Units reserved by a drop's item actor.
    Drop {
        actor: ActorRef<ItemMessage>,
        slot: Arc<DropSlot>,
        user_id: i64,
        quantity: Quantity,
    },
}

impl Settlement {
    /// Units of a drop, reserved by `actor` for `user_id`.
    pub fn drop_units(
        actor: ActorRef<ItemMessage>,
        slot: Arc<DropSlot>,
        user_id: i64,
        quantity: Quantity,
    ) -> Self {
        slot.draft_started();
        Self {
            target: Some(SettleTarget::Drop {
                actor,
                slot,
                user_id,
                quantity,
            }),
            committing: false,
        }
    }

    /// The draft's batch is going to the store.
    pub fn mark_committing(&mut self) {
        self.committing = true;
    }

    /// Reports the outcome; a dead actor is fine (its successor counts from the store).
    pub fn settle(mut self, committed: bool) {
        if let Some(target) = self.target.take() {
            target.settle(committed);
        }
    }
}

impl SettleTarget {
    fn settle(self, committed: bool) {
        match self {
            SettleTarget::Drop {
                actor,
                slot,
                user_id,
                quantity,
            } => {
                let _ = actor.cast(ItemMessage::Settle {
                    user_id,
                    quantity,
                    committed,
                });
                slot.draft_settled();
            }
        }
    }

    fn abandon(self) {
        match self {
            SettleTarget::Drop { slot, .. } => slot.draft_settled(),
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let Some(target) = self.target.take() else {
            return;
        };
        if self.committing {
            tracing::error!("a draft was dropped while its commit was in doubt; units stay held");
            target.abandon();
        } else {
            target.settle(false);
        }
    }
}

/// One order waiting to be written, with the shopper's reply port.
#[derive(Debug)]
pub struct Draft {
    pub order: DraftOrder,
    pub settlement: Settlement,
    pub reply: RpcReplyPort<Result<OrderRecord, DropError>>,
}

/// Messages the [`WriterActor`] handles.
#[derive(Debug)]
pub enum WriterMessage {
    /// Write this draft in a coming batch.
    Write(Draft),
    /// The batching window has passed.
    Flush,
    /// A batch commit finished (either way).
    CommitDone,
    /// Panics the writer. Used by tests and drills to prove supervision and recovery.
    Crash,
}
