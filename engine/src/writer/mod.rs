//! Group commit: order drafts from many purchases are written in one transaction per batch.
//!
//! - [`actor`]: [`WriterActor`], which collects drafts by size or by a short window.
//! - [`commit`]: a batch's way through the store, and how a commit in doubt is settled.
//! - [`ticket`]: [`Ticket`], which tells whether a draft's caller or the writer decided first.
//! - [`settlement`]: [`Settlement`], how a draft's units are settled with its drop.
//! - [`outcome`]: [`InDoubt`] and [`Settled`], the answer to a commit the store could not tell.
//! - [`ids`]: [`IdAllocator`], which hands out order ids in blocks reserved in the store.

pub mod actor;
mod commit;
pub mod ids;
pub mod outcome;
pub mod settlement;
pub mod ticket;

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use hurry_persistence::{IdempotencyEntry, NewOrder, OrderLine, OrderRecord};
use ractor::ActorRef;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use actor::{WriterActor, WriterArgs, WriterConfig};
pub use commit::{CommitFault, CommitFaults};
pub use ids::IdAllocator;
pub use outcome::{InDoubt, Settled};
pub use settlement::Settlement;
pub use ticket::Ticket;

use crate::domain::OrderStatus;
use crate::seller::PurchaseError;

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

/// Where the shopper's answer goes: the order once committed, or why not.
pub type Reply = oneshot::Sender<Result<OrderRecord, PurchaseError>>;

/// One order waiting to be written, with the shopper's reply.
#[derive(Debug)]
pub struct Draft {
    pub order: DraftOrder,
    pub settlement: Settlement,
    /// Shared with the caller: the writer sends the draft only if the caller still waits.
    pub ticket: Arc<Ticket>,
    /// When the caller stops waiting: the draft goes to the store only with time left to
    /// commit before it.
    pub deadline: Instant,
    pub reply: Reply,
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
    /// Panics the writer. Tests and drills prove supervision and recovery with it.
    #[cfg(feature = "test-hooks")]
    Crash,
}

/// The writer now serving: the engine supervisor replaces it when it restarts the writer,
/// and every item actor hands its drafts to whichever one this holds at that moment.
#[derive(Debug, Clone)]
pub struct WriterHandle(Arc<RwLock<ActorRef<WriterMessage>>>);

impl WriterHandle {
    /// A handle on `writer`.
    pub fn new(writer: ActorRef<WriterMessage>) -> Self {
        Self(Arc::new(RwLock::new(writer)))
    }

    /// The writer serving now.
    pub fn current(&self) -> ActorRef<WriterMessage> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Makes `writer` the one serving.
    pub fn replace(&self, writer: ActorRef<WriterMessage>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = writer;
    }
}
