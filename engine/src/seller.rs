//! The one door the API buys through: [`Seller`], with [`PurchaseRequest`] and
//! [`PurchaseError`]. [`Engine`](crate::Engine) is the seller; the comparison baselines of
//! the load tests (the `baseline` feature) are others.

use async_trait::async_trait;
use hurry_persistence::{IdempotencyEntry, OrderRecord};

use crate::domain::Quantity;
use crate::drop::DropError;
use crate::writer::{InDoubt, WriteError};

/// A purchase of a drop.
#[derive(Debug, Clone)]
pub struct PurchaseRequest {
    pub item_id: i64,
    pub user_id: i64,
    pub quantity: Quantity,
    /// The key and request hash to store with the order, when the request had a key.
    pub idempotency: Option<IdempotencyEntry>,
}

/// Why a purchase did not become an order (or cannot say yet).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PurchaseError {
    /// No drop of this item is sold here, and why.
    #[error("{0}")]
    NotServed(NotServed),
    /// The drop refused, or the order could not be made durable (nothing was bought).
    #[error(transparent)]
    Drop(#[from] DropError),
    /// The request's idempotency key was stored before: its first answer is in the store.
    #[error("the idempotency key was used before")]
    Repeat,
    /// The commit's outcome cannot be told yet (the store became unreachable mid-commit): the
    /// units stay held, and the [`InDoubt`] resolves once the store can tell.
    #[error("the outcome of the commit is not known yet")]
    OutcomeUnknown(InDoubt),
}

impl From<WriteError> for PurchaseError {
    /// The writer's answer as the shopper hears it: not made durable is the drop's
    /// `Unavailable`, as for every other way nothing was bought.
    fn from(err: WriteError) -> Self {
        match err {
            WriteError::Unavailable => PurchaseError::Drop(DropError::Unavailable),
            WriteError::Repeat => PurchaseError::Repeat,
            WriteError::OutcomeUnknown(doubt) => PurchaseError::OutcomeUnknown(doubt),
        }
    }
}

/// Why no drop of an item is sold here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotServed {
    #[error("no such item")]
    UnknownItem,
    #[error("the item is not sold in a drop")]
    NotADrop,
    #[error("the drop is closed")]
    Closed,
    /// Another process on this store sells its drops (until cluster mode has real leases,
    /// only one may).
    #[error("another process on this store sells its drops")]
    OtherProcess,
}

impl From<NotServed> for PurchaseError {
    fn from(reason: NotServed) -> Self {
        PurchaseError::NotServed(reason)
    }
}

/// What sells drop units: decides purchases and says what is left.
#[async_trait]
pub trait Seller: Send + Sync + 'static {
    /// The answer a purchase of drop `item_id` gets right now whoever asks (not open, closed,
    /// sold out), decided from memory; `None` when the purchase has to be decided.
    fn refusal(&self, item_id: i64) -> Option<PurchaseError>;

    /// Buys; the order is committed when this returns `Ok`.
    async fn purchase(&self, request: PurchaseRequest) -> Result<OrderRecord, PurchaseError>;

    /// Units of drop `item_id` still sellable; `None` when unknown here.
    async fn available(&self, item_id: i64) -> Option<i64>;
}
