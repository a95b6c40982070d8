//! `pg_row`: the naive but correct database way. Per drop, one stock row
//! (`drop_row_stock`); per purchase, one transaction that takes the units with
//! `UPDATE ... WHERE remaining >= q` (the row lock makes the buyers of an item queue behind one
//! another), checks the buyer's units against the per-user limit, and writes the order
//! ([`hurry_persistence::ComparisonStore::purchase_row`]). On SQLite the one writer connection
//! plays the lock's part.

use async_trait::async_trait;
use hurry_persistence::{OrderRecord, RowPurchase};

use super::common::{count_created, new_order, refuse, unavailable, Items, OncePerItem};
use super::BaselineParts;
use crate::drop::DropError;
use crate::seller::{PurchaseError, PurchaseRequest, Seller};
use crate::writer::InDoubt;

/// The `pg_row` baseline.
pub(super) struct PgRow {
    parts: BaselineParts,
    items: Items,
    /// Items whose stock row this process has set up.
    rows: OncePerItem,
}

impl PgRow {
    /// The baseline; stock rows are set up at each item's first purchase.
    pub(super) fn new(parts: BaselineParts) -> Self {
        Self {
            parts,
            items: Items::default(),
            rows: OncePerItem::default(),
        }
    }
}

#[async_trait]
impl Seller for PgRow {
    fn refusal(&self, _item_id: i64) -> Option<PurchaseError> {
        None
    }

    async fn purchase(&self, request: PurchaseRequest) -> Result<OrderRecord, PurchaseError> {
        let parts = &self.parts;
        let item_id = request.item_id;
        let (item, spec) = self
            .items
            .open_drop(parts.store.as_ref(), item_id, chrono::Utc::now())
            .await?;
        self.rows
            .ensure(item_id, || async {
                let units = parts
                    .comparison
                    .init_row_stock(item_id)
                    .await
                    .map_err(|_| unavailable())?;
                tracing::info!(item_id, units = ?units, "stock row ready");
                Ok(())
            })
            .await?;
        let id = parts.order_ids.take(1).await.map_err(|err| {
            tracing::warn!(error = %err, "cannot reserve an order id");
            unavailable()
        })?;
        let order = new_order(
            id,
            request.user_id,
            &item,
            request.quantity,
            request.idempotency,
            parts.payment_window,
        );
        let limit = spec.per_user_limit;
        match parts.comparison.purchase_row(&order, limit).await {
            Ok(RowPurchase::Placed) => {
                count_created();
                Ok(order.to_record())
            }
            Ok(RowPurchase::SoldOut) => Err(refuse(DropError::SoldOut)),
            Ok(RowPurchase::LimitReached) => Err(refuse(DropError::LimitReached { limit })),
            Ok(RowPurchase::InsufficientStock { available }) => {
                Err(refuse(DropError::InsufficientStock { available }))
            }
            Ok(RowPurchase::Repeat) => Err(PurchaseError::Repeat),
            Err(err) if err.is_in_doubt() => {
                tracing::warn!(error = %err, order_id = id, "row purchase outcome unknown");
                Err(PurchaseError::OutcomeUnknown(InDoubt::lost()))
            }
            Err(err) => {
                // Refused by the database: rolled back, the row and the orders agree.
                tracing::warn!(error = %err, order_id = id, "row purchase failed");
                Err(unavailable())
            }
        }
    }

    async fn available(&self, item_id: i64) -> Option<i64> {
        self.parts
            .comparison
            .row_stock(item_id)
            .await
            .ok()
            .flatten()
    }
}
