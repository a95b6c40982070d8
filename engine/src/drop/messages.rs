//! The item actor's protocol.

use std::sync::Arc;

use futures::future::BoxFuture;
use hurry_persistence::{OrderRecord, StoreError};
use ractor::RpcReplyPort;
use serde::Serialize;
use tokio::sync::oneshot;

use super::error::DropError;
use crate::domain::Quantity;
use crate::seller::{PurchaseError, PurchaseRequest};
use crate::writer::Ticket;

/// Where a purchase's answer goes: the order once committed, or why not.
pub type PurchaseReply = oneshot::Sender<Result<OrderRecord, PurchaseError>>;

/// A store transaction that releases an order's units: `true` when it moved the order (an
/// order no longer in the status it expected is left alone: `false`).
pub struct ReleaseChange(pub BoxFuture<'static, Result<bool, StoreError>>);

impl std::fmt::Debug for ReleaseChange {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ReleaseChange")
    }
}

/// Messages an [`ItemActor`](super::ItemActor) handles.
#[derive(Debug)]
pub enum ItemMessage {
    /// Buy; answered once the order is committed (by the writer), or refused at once. Skipped
    /// when the caller has abandoned `ticket` meanwhile.
    Reserve {
        request: PurchaseRequest,
        ticket: Arc<Ticket>,
        /// When the caller stops waiting.
        deadline: tokio::time::Instant,
        reply: PurchaseReply,
    },
    /// The writer settled reservations: `committed_units` of `num_committed` drafts are in
    /// the store; the `released` ones (user, units) are definitely not.
    Settle {
        committed_units: i64,
        num_committed: u64,
        released: Vec<(i64, Quantity)>,
    },
    /// Run `change`, a store transaction that moves an order of this drop (one line of
    /// `quantity` units for `user_id`) to a status that gives its units back, and restock the
    /// units once it answers `true`; answers what the change answered.
    Release {
        user_id: i64,
        quantity: Quantity,
        change: ReleaseChange,
        reply: RpcReplyPort<Result<bool, DropError>>,
    },
    /// A release committed: the units are sellable again.
    Restock { user_id: i64, quantity: Quantity },
    /// Adds `delta` units to the drop (negative: takes unsold units out), durably; answers the
    /// drop's units afterwards. Added units are sellable once the answer is sent.
    AdjustUnits {
        delta: i64,
        reply: RpcReplyPort<Result<i64, DropError>>,
    },
    /// Units added by `AdjustUnits` are stored: make them sellable, then answer.
    UnitsStored {
        delta: i64,
        reply: RpcReplyPort<Result<i64, DropError>>,
    },
    /// New orders are priced at `price` from now on (the seller changed it in the store).
    SetPrice { price: i64 },
    /// The store's state is in doubt: fail, so the supervisor restarts this actor from it.
    Recount,
    /// Counters and recent rates.
    Status(RpcReplyPort<ItemStatus>),
    /// Panics the actor. Tests and drills prove supervision and recovery with it.
    #[cfg(feature = "test-hooks")]
    Crash,
}

/// What an item actor reports about itself.
#[derive(Debug, Clone, Serialize)]
pub struct ItemStatus {
    pub item_id: i64,
    pub stock_in_memory: i64,
    pub leased: i64,
    pub sold: i64,
    pub pending: i64,
    pub num_buyers: usize,
    pub num_accepted: u64,
    pub num_rejected: u64,
    /// Accepted purchases per second over the last minute.
    pub accepted_per_sec: f64,
    /// Rejected purchases per second over the last minute.
    pub rejected_per_sec: f64,
}
