//! [`Draft`]: an order waiting for its batch, with whom to settle and whom to answer.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hurry_persistence::{IdempotencyEntry, NewOrder, OrderLine, OrderRecord};
use tokio::time::Instant;

use super::error::WriteError;
use super::settlement::Settlement;
use super::ticket::Ticket;
use crate::domain::OrderStatus;

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

/// What the writer answers for a draft: the order once committed, or why not.
pub type Answer = Result<OrderRecord, WriteError>;

/// Where a draft's [`Answer`] goes. The writer answers each draft once; whoever made the
/// draft decides what its caller hears (the item actor turns it into a purchase answer).
pub struct Reply(Box<dyn FnOnce(Answer) + Send>);

impl Reply {
    /// A reply that hands the answer to `deliver`.
    pub fn new(deliver: impl FnOnce(Answer) + Send + 'static) -> Self {
        Self(Box::new(deliver))
    }

    /// Answers; the caller may have stopped listening, then nobody hears it.
    pub fn send(self, answer: Answer) {
        (self.0)(answer);
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

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
