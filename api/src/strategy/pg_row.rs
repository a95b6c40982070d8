//! `pg_row`: the naive but correct database way. Per drop, one stock row
//! (`drop_row_stock`); per purchase, one transaction that takes the units with
//! `UPDATE ... WHERE remaining >= q` (the row lock makes the buyers of an item queue behind one
//! another), checks the buyer's units against the per-user limit, and writes the order
//! ([`hurry_persistence::ComparisonStore::purchase_row`]). On SQLite the one writer connection
//! plays the lock's part.

use hurry_engine::domain::Quantity;
use hurry_engine::drop::DropError;
use hurry_persistence::{IdempotencyEntry, OrderRecord, RowPurchase};

use super::{count_created, new_order, open_drop, refuse, unavailable, OncePerItem};
use crate::error::ApiError;
use crate::state::AppState;

/// The `pg_row` strategy.
pub struct PgRow {
    /// Items whose stock row this process has set up.
    rows: OncePerItem,
    /// How long a new order may stay unpaid.
    payment_window: chrono::Duration,
}

impl PgRow {
    /// The strategy; stock rows are set up at each item's first purchase.
    pub fn new(payment_window: chrono::Duration) -> Self {
        Self {
            rows: OncePerItem::default(),
            payment_window,
        }
    }

    /// Buys `quantity` units of drop `item_id` for `user_id`; the order is committed when
    /// this returns `Ok`.
    pub async fn purchase(
        &self,
        state: &AppState,
        item_id: i64,
        user_id: i64,
        quantity: Quantity,
        idempotency: Option<IdempotencyEntry>,
    ) -> Result<OrderRecord, ApiError> {
        let (item, spec) = open_drop(state, item_id, chrono::Utc::now()).await?;
        self.rows
            .ensure(item_id, || async {
                let units = state.store.init_row_stock(item_id).await?;
                tracing::info!(item_id, units = ?units, "stock row ready");
                Ok(())
            })
            .await?;
        let id = state.engine.next_order_id().await.map_err(|err| {
            tracing::warn!(error = %err, "cannot reserve an order id");
            unavailable()
        })?;
        let order = new_order(
            id,
            user_id,
            &item,
            quantity,
            idempotency,
            self.payment_window,
        );
        match state.store.purchase_row(&order, spec.per_user_limit).await {
            Ok(RowPurchase::Placed) => {
                state.engine.outbox_written().notify_one();
                count_created();
                Ok(order.to_record())
            }
            Ok(RowPurchase::SoldOut) => Err(refuse(DropError::SoldOut)),
            Ok(RowPurchase::LimitReached) => Err(refuse(DropError::LimitReached {
                limit: spec.per_user_limit,
            })),
            Ok(RowPurchase::InsufficientStock { available }) => {
                Err(refuse(DropError::InsufficientStock { available }))
            }
            Err(err) => {
                // Rolled back, or committed with the answer lost: either way the row and the
                // orders agree, and a retry under the same key finds the order.
                tracing::warn!(error = %err, order_id = id, "row purchase failed");
                Err(unavailable())
            }
        }
    }
}
