//! The store side of the stock-strategy comparison (`engine.stock_strategy`): the `pg_row`
//! baseline, which sells a drop from one database row per item, and the rows of the audit of
//! a drop's orders that the load-test harness reads at the end of a run
//! ([`crate::OrderStore::drop_orders`]). The engine uses none of this.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::model::NewOrder;

/// What [`ComparisonStore::purchase_row`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowPurchase {
    /// The units were taken and the order written, in one transaction.
    Placed,
    /// No unit left.
    SoldOut,
    /// Fewer units left than asked for.
    InsufficientStock { available: i64 },
    /// The user would hold more units of the drop than its per-user limit.
    LimitReached,
    /// The order's idempotency key was stored before (nothing was taken).
    Repeat,
}

/// One order with a line for a drop, as the audit shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropOrderRow {
    pub id: i64,
    pub user_id: i64,
    /// Units of the drop's item in the order (all its lines for that item).
    pub quantity: i64,
    pub status: String,
    /// The idempotency key the order was created under, if any.
    pub idempotency_key: Option<String>,
}

/// A [`DropOrderRow`] as both backends select it: id, user id, units, status, key.
pub(crate) type DropOrderTuple = (i64, i64, i64, String, Option<String>);

impl From<DropOrderTuple> for DropOrderRow {
    fn from((id, user_id, quantity, status, idempotency_key): DropOrderTuple) -> Self {
        Self {
            id,
            user_id,
            quantity,
            status,
            idempotency_key,
        }
    }
}

/// Row-locked stock for the `pg_row` strategy. Not part of [`crate::Store`]: only the
/// comparison baseline uses it ([`crate::connect_with_comparison`]).
#[async_trait]
pub trait ComparisonStore: Send + Sync {
    /// Creates drop `item_id`'s stock row, unless it exists, with its units minus those held
    /// by orders (the units [`crate::CatalogStore::drop_sales`] counts); returns the row's
    /// units afterwards, `None` when the item has no drop.
    async fn init_row_stock(&self, item_id: i64) -> Result<Option<i64>, StoreError>;

    /// In one transaction: takes the units of `order`'s one line from its item's stock row
    /// (the row lock serializes buyers of the item), checks that the user then holds at most
    /// `per_user_limit` units of the item, and writes the order as
    /// [`crate::OrderStore::commit_orders`] does (lines, idempotency key, `order.created`
    /// event). Anything but `Placed` writes nothing. `Invalid` for an order without exactly
    /// one line or an item without a stock row ([`Self::init_row_stock`] first).
    async fn purchase_row(
        &self,
        order: &NewOrder,
        per_user_limit: u32,
    ) -> Result<RowPurchase, StoreError>;

    /// The units in drop `item_id`'s stock row; `None` when it has none.
    async fn row_stock(&self, item_id: i64) -> Result<Option<i64>, StoreError>;
}

/// The item and units of `order`'s one line; `Invalid` for any other number of lines.
pub(crate) fn single_line(order: &NewOrder) -> Result<(i64, i64), StoreError> {
    match order.lines.as_slice() {
        [line] => Ok((line.item_id, line.quantity)),
        _ => Err(StoreError::Invalid(
            "a row purchase has exactly one line".into(),
        )),
    }
}

/// Whether a user holding `held` units may take `quantity` more under `per_user_limit`.
pub(crate) fn within_limit(held: i64, quantity: i64, per_user_limit: u32) -> bool {
    held.saturating_add(quantity) <= i64::from(per_user_limit)
}

/// The refusal when the stock row could not give `quantity` units: the row's `remaining`
/// units (`None`: no row) and the user's `held` units decide, in the item actor's order
/// (sold out, then the limit, then too few units).
pub(crate) fn refusal(
    remaining: Option<i64>,
    held: i64,
    quantity: i64,
    per_user_limit: u32,
) -> Result<RowPurchase, StoreError> {
    match remaining {
        None => Err(StoreError::Invalid(
            "the drop has no stock row: init_row_stock first".into(),
        )),
        Some(remaining) if remaining <= 0 => Ok(RowPurchase::SoldOut),
        Some(_) if !within_limit(held, quantity, per_user_limit) => Ok(RowPurchase::LimitReached),
        Some(available) => Ok(RowPurchase::InsufficientStock { available }),
    }
}
