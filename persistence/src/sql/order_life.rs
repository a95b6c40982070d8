//! An order's life after its payment: the payment deadline, cancel, return (its refund
//! queued in the same transaction), and the shipment queries.

use super::super::*;
use super::payments::{
    give_back_general_stock, move_order, payment_from_row, queue_refund, PAYMENT_COLUMNS,
};
use crate::store::{OrderLifeStore, OrderStore};

#[async_trait]
impl OrderLifeStore for SqlStore {
    async fn orders_past_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = 'pending_payment' AND payment_due_at <= $1 \
             ORDER BY payment_due_at LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.reads())
        .await?;
        let mut orders = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(order) = self.order_by_id(id).await? {
                orders.push(order);
            }
        }
        Ok(orders)
    }

    async fn expire_order(&self, order_id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin_guarded().await?;
        let due: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM orders WHERE id = $1 AND status = 'pending_payment' \
             AND payment_due_at <= $2{FOR_UPDATE}"
        ))
        .bind(order_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if due.is_none() {
            return Ok(false);
        }
        let expired = release(
            &mut tx,
            order_id,
            "pending_payment",
            "expired",
            now_micros(),
        )
        .await?;
        tx.commit().await?;
        Ok(expired)
    }

    async fn cancel_order(&self, order_id: i64, from: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_guarded().await?;
        let now = now_micros();
        if !release(&mut tx, order_id, from, "cancelled", now).await? {
            return Ok(false);
        }
        refund_paid_payment(&mut tx, order_id, "cancel", now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn request_return(
        &self,
        order_id: i64,
        delivered_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_guarded().await?;
        let now = now_micros();
        let moved: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE orders SET status = 'return_requested', updated_at = $3 \
             WHERE id = $1 AND status = 'delivered' AND updated_at >= $2 \
             RETURNING user_id, amount",
        )
        .bind(order_id)
        .bind(delivered_since)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, amount)) = moved else {
            return Ok(false);
        };
        let payload = serde_json::json!({
            "order_id": order_id, "user_id": user_id, "amount": amount,
            "from": "delivered", "status": "return_requested",
        });
        enqueue_event(&mut tx, "order.return_requested", order_id, payload).await?;
        refund_paid_payment(&mut tx, order_id, "return", now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn orders_in_status_since(
        &self,
        status: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = $1 AND updated_at < $2 \
             ORDER BY updated_at LIMIT $3",
        )
        .bind(status)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.reads())
        .await?)
    }
}

/// Moves order `order_id` from `from` to `to` (a status that gives units back), gives its
/// general stock back and writes `order.<to>`; `false` when it was not in `from`.
pub(super) async fn release(
    tx: &mut sql::Tx<'_>,
    order_id: i64,
    from: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some((user_id, amount)) = move_order(tx, order_id, from, to, now).await? else {
        return Ok(false);
    };
    give_back_general_stock(tx, order_id, now).await?;
    let payload = serde_json::json!({
        "order_id": order_id, "user_id": user_id, "amount": amount, "from": from, "status": to,
    });
    enqueue_event(tx, &format!("order.{to}"), order_id, payload).await?;
    Ok(true)
}

/// Queues a refund (for `reason`) of what the paid payment of order `order_id` has not given
/// back yet; nothing when the order has no paid payment.
async fn refund_paid_payment(
    tx: &mut sql::Tx<'_>,
    order_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 AND status = 'paid' \
         ORDER BY id LIMIT 1{FOR_UPDATE}"
    ))
    .bind(order_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(payment) = row.as_ref().map(payment_from_row).transpose()? {
        let rest = payment.amount - payment.refunded_amount;
        if rest > 0 {
            queue_refund(tx, &payment, rest, reason, now).await?;
        }
    }
    Ok(())
}
