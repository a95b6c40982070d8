//! What both baselines share: the item and its window, the order they write, refusals counted
//! as the engine counts them, and per-item set-up done once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use hurry_persistence::{DropSpec, IdempotencyEntry, ItemRecord, NewOrder, OrderLine, Store};
use tokio::sync::OnceCell;

use crate::domain::{OrderStatus, Quantity};
use crate::drop::DropError;
use crate::seller::{NotServed, PurchaseError};

/// Items as first read (a baseline never hears of changes: load tests only).
#[derive(Default)]
pub(super) struct Items(RwLock<HashMap<i64, Arc<ItemRecord>>>);

impl Items {
    /// The drop of live item `item_id` if it is open at `now`, with the engine's refusals
    /// otherwise.
    pub(super) async fn open_drop(
        &self,
        store: &dyn Store,
        item_id: i64,
        now: DateTime<Utc>,
    ) -> Result<(Arc<ItemRecord>, DropSpec), PurchaseError> {
        let known = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&item_id)
            .cloned();
        let item = match known {
            Some(item) => item,
            None => {
                let item = store
                    .item_by_id(item_id)
                    .await
                    .map_err(|_| unavailable())?
                    .ok_or(NotServed::UnknownItem)?;
                let item = Arc::new(item);
                self.0
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(item_id, item.clone());
                item
            }
        };
        let spec = item.drop.clone().ok_or(NotServed::NotADrop)?;
        if now < spec.opens_at {
            return Err(refuse(DropError::NotOpen {
                opens_at: spec.opens_at,
            }));
        }
        if now >= spec.closes_at {
            return Err(refuse(DropError::Closed));
        }
        Ok((item, spec))
    }
}

/// Counts a purchase that did not become an order, as the item actor does, and answers it.
pub(super) fn refuse(err: DropError) -> PurchaseError {
    metrics::counter!("hurry_purchases_total", "outcome" => err.code()).increment(1);
    err.into()
}

/// Counts a purchase that became an order.
pub(super) fn count_created() {
    metrics::counter!("hurry_purchases_total", "outcome" => "created").increment(1);
}

/// A purchase whose order could not be made durable: `Unavailable`, counted.
pub(super) fn unavailable() -> PurchaseError {
    refuse(DropError::Unavailable)
}

/// What the writer would write for this purchase: pending payment until `payment_window`
/// from now, one line at the item's price, under the idempotency entry.
pub(super) fn new_order(
    id: i64,
    user_id: i64,
    item: &ItemRecord,
    quantity: Quantity,
    idempotency: Option<IdempotencyEntry>,
    payment_window: chrono::Duration,
) -> NewOrder {
    // Microseconds: what both stores keep, so a replayed answer matches the first one.
    let now = hurry_persistence::now_micros();
    let units = i64::from(quantity.get());
    let amount = units * item.price;
    NewOrder {
        id,
        user_id,
        status: OrderStatus::PendingPayment.as_str().to_owned(),
        amount,
        payment_due_at: Some(now + payment_window),
        created_at: now,
        lines: vec![OrderLine {
            item_id: item.id,
            quantity: units,
            unit_price: item.price,
            amount,
        }],
        idempotency,
    }
}

/// Per-item set-up that runs once per process (a Redis counter, a stock row): concurrent
/// first purchases wait for one set-up; a failed one is tried again by the next purchase.
#[derive(Default)]
pub(super) struct OncePerItem(RwLock<HashMap<i64, Arc<OnceCell<()>>>>);

impl OncePerItem {
    /// Runs `set_up` for `item_id` unless it has succeeded before.
    pub(super) async fn ensure<F, Fut>(&self, item_id: i64, set_up: F) -> Result<(), PurchaseError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), PurchaseError>>,
    {
        let known = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&item_id)
            .cloned();
        let cell = match known {
            Some(cell) if cell.initialized() => return Ok(()),
            Some(cell) => cell,
            None => self
                .0
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .entry(item_id)
                .or_default()
                .clone(),
        };
        cell.get_or_try_init(set_up).await.map(|_| ())
    }

    /// Forgets `item_id`'s set-up (what it made has gone): the next purchase runs it again.
    pub(super) fn forget(&self, item_id: i64) {
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&item_id);
    }
}
