//! Payments and refunds. A confirm's outcome and a refund's end are each one transaction
//! with their order change and outbox rows.

use super::super::*;
use crate::store::{OrderStore, PaymentStore};
use sqlx::Row;

pub(super) const PAYMENT_COLUMNS: &str =
    "id, order_id, user_id, pg_order_id, provider, amount, status, \
     payment_key, approved_at, refunded_amount, created_at";

pub(super) fn payment_from_row(row: &DbRow) -> Result<PaymentRecord, StoreError> {
    Ok(PaymentRecord {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        pg_order_id: row.try_get("pg_order_id")?,
        provider: row.try_get("provider")?,
        amount: row.try_get("amount")?,
        status: row.try_get("status")?,
        payment_key: row.try_get("payment_key")?,
        approved_at: row.try_get("approved_at")?,
        refunded_amount: row.try_get("refunded_amount")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl PaymentStore for SqlStore {
    async fn create_payment(&self, payment: &NewPayment) -> Result<PaymentRecord, StoreError> {
        let row = sqlx::query(&format!(
            "INSERT INTO payments (id, order_id, user_id, pg_order_id, provider, amount, status, \
                 created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'ready', $7, $7) RETURNING {PAYMENT_COLUMNS}"
        ))
        .bind(payment.id)
        .bind(payment.order_id)
        .bind(payment.user_id)
        .bind(&payment.pg_order_id)
        .bind(&payment.provider)
        .bind(payment.amount)
        .bind(payment.created_at)
        .fetch_one(self.writes())
        .await
        .map_err(StoreError::from_write)?;
        payment_from_row(&row)
    }

    async fn payment_by_id(&self, id: i64) -> Result<Option<PaymentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.reads())
        .await?;
        row.as_ref().map(payment_from_row).transpose()
    }

    async fn payment_by_pg_order_id(
        &self,
        pg_order_id: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE pg_order_id = $1"
        ))
        .bind(pg_order_id)
        .fetch_optional(self.reads())
        .await?;
        row.as_ref().map(payment_from_row).transpose()
    }

    async fn start_confirm(
        &self,
        payment_id: i64,
        payment_key: &str,
    ) -> Result<Option<ConfirmStart>, StoreError> {
        let mut tx = self.begin_guarded().await?;
        let Some(payment) = locked_payment(&mut tx, payment_id).await? else {
            return Ok(None);
        };
        let start = if payment.status != "ready" {
            ConfirmStart::Settled(payment)
        } else {
            match payment.payment_key.as_deref() {
                Some(key) if key == payment_key => ConfirmStart::Started(payment),
                Some(_) => ConfirmStart::OtherKey(payment),
                None => {
                    sqlx::query(
                        "UPDATE payments SET payment_key = $2, updated_at = $3 WHERE id = $1",
                    )
                    .bind(payment_id)
                    .bind(payment_key)
                    .bind(now_micros())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_write)?;
                    ConfirmStart::Started(PaymentRecord {
                        payment_key: Some(payment_key.to_owned()),
                        ..payment
                    })
                }
            }
        };
        tx.commit().await?;
        Ok(Some(start))
    }

    async fn record_charge(
        &self,
        payment_id: i64,
        approved_at: DateTime<Utc>,
    ) -> Result<Option<ChargeRecorded>, StoreError> {
        let mut tx = self.begin_guarded().await?;
        let Some(payment) = locked_payment(&mut tx, payment_id).await? else {
            return Ok(None);
        };
        // A payment recorded as failed may still have been charged (a confirm on another node
        // landed after this one gave up): it is taken as paid and refunded.
        if payment.status != "ready" && payment.status != "failed" {
            return Ok(Some(ChargeRecorded::AlreadySettled(payment)));
        }
        let now = now_micros();
        sqlx::query(
            "UPDATE payments SET status = 'paid', approved_at = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(payment_id)
        .bind(approved_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let payment = PaymentRecord {
            status: "paid".into(),
            approved_at: Some(approved_at),
            ..payment
        };
        let paid = move_order(&mut tx, payment.order_id, "pending_payment", "paid", now).await?;
        let recorded = match paid {
            Some((user_id, amount)) => {
                let payload = serde_json::json!({
                    "order_id": payment.order_id, "user_id": user_id, "amount": amount,
                    "from": "pending_payment", "status": "paid",
                    "payment_id": payment.id, "provider": payment.provider,
                });
                enqueue_event(&mut tx, "order.paid", payment.order_id, payload).await?;
                ChargeRecorded::OrderPaid(payment)
            }
            None => {
                queue_refund(&mut tx, &payment, payment.amount, "late", now).await?;
                ChargeRecorded::RefundOwed(payment)
            }
        };
        tx.commit().await?;
        Ok(Some(recorded))
    }

    async fn record_failure(&self, payment_id: i64) -> Result<Option<OrderRecord>, StoreError> {
        let mut tx = self.begin_guarded().await?;
        let Some(payment) = locked_payment(&mut tx, payment_id).await? else {
            return Ok(None);
        };
        if payment.status != "ready" {
            return Ok(None);
        }
        let now = now_micros();
        sqlx::query("UPDATE payments SET status = 'failed', updated_at = $2 WHERE id = $1")
            .bind(payment_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let failed = serde_json::json!({
            "payment_id": payment.id, "order_id": payment.order_id,
            "provider": payment.provider, "amount": payment.amount,
        });
        enqueue_event(&mut tx, "payment.failed", payment.order_id, failed).await?;
        let released = move_order(
            &mut tx,
            payment.order_id,
            "pending_payment",
            "payment_failed",
            now,
        )
        .await?;
        if let Some((user_id, amount)) = released {
            give_back_general_stock(&mut tx, payment.order_id, now).await?;
            let payload = serde_json::json!({
                "order_id": payment.order_id, "user_id": user_id, "amount": amount,
                "from": "pending_payment", "status": "payment_failed",
            });
            enqueue_event(&mut tx, "order.payment_failed", payment.order_id, payload).await?;
        }
        tx.commit().await?;
        if released.is_none() {
            return Ok(None);
        }
        self.order_by_id(payment.order_id).await
    }

    async fn payments_in_doubt(
        &self,
        older_than: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments \
             WHERE status = 'ready' AND payment_key IS NOT NULL AND updated_at < $1 \
             ORDER BY id LIMIT $2"
        ))
        .bind(older_than)
        .bind(i64::from(limit))
        .fetch_all(self.reads())
        .await?;
        rows.iter().map(payment_from_row).collect()
    }

    async fn refunds(&self, status: &str, limit: u32) -> Result<Vec<RefundRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.payment_id, r.order_id, r.provider, r.amount, r.reason, r.status, \
                    r.attempts, r.last_error, p.payment_key, p.pg_order_id \
             FROM refunds r JOIN payments p ON p.id = r.payment_id \
             WHERE r.status = $1 ORDER BY r.id LIMIT $2",
        )
        .bind(status)
        .bind(i64::from(limit))
        .fetch_all(self.reads())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RefundRecord {
                    id: row.try_get("id")?,
                    payment_id: row.try_get("payment_id")?,
                    order_id: row.try_get("order_id")?,
                    provider: row.try_get("provider")?,
                    amount: row.try_get("amount")?,
                    reason: row.try_get("reason")?,
                    status: row.try_get("status")?,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    payment_key: row.try_get("payment_key")?,
                    pg_order_id: row.try_get("pg_order_id")?,
                })
            })
            .collect()
    }

    async fn finish_refund(&self, refund_id: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_guarded().await?;
        let now = now_micros();
        let done: Option<(i64, i64, i64)> = sqlx::query_as(
            "UPDATE refunds SET status = 'done', updated_at = $2 \
             WHERE id = $1 AND status = 'pending' RETURNING payment_id, order_id, amount",
        )
        .bind(refund_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((payment_id, order_id, amount)) = done else {
            return Ok(false);
        };
        let (refunded, total): (i64, i64) = sqlx::query_as(
            "UPDATE payments SET refunded_amount = refunded_amount + $2, \
                 status = CASE WHEN refunded_amount + $2 >= amount THEN 'refunded' ELSE status END, \
                 updated_at = $3 \
             WHERE id = $1 RETURNING refunded_amount, amount",
        )
        .bind(payment_id)
        .bind(amount)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let payload = serde_json::json!({
            "payment_id": payment_id, "order_id": order_id, "refund_id": refund_id,
            "amount": amount, "refunded_amount": refunded, "payment_amount": total,
        });
        enqueue_event(&mut tx, "payment.refunded", order_id, payload).await?;
        let reason: String = sqlx::query_scalar("SELECT reason FROM refunds WHERE id = $1")
            .bind(refund_id)
            .fetch_one(&mut *tx)
            .await?;
        if reason == "return" {
            super::order_life::release(&mut tx, order_id, "return_requested", "returned", now)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn refund_attempt_failed(&self, refund_id: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE refunds SET attempts = attempts + 1, last_error = $2, updated_at = $3 \
             WHERE id = $1",
        )
        .bind(refund_id)
        .bind(error)
        .bind(now_micros())
        .execute(self.writes())
        .await?;
        Ok(())
    }
}

/// Payment `id`, locked until the transaction ends.
async fn locked_payment(
    tx: &mut sql::Tx<'_>,
    id: i64,
) -> Result<Option<PaymentRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1{FOR_UPDATE}"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(payment_from_row).transpose()
}

/// Moves order `order_id` from `from` to `to`; its user and amount when it was in `from`.
pub(super) async fn move_order(
    tx: &mut sql::Tx<'_>,
    order_id: i64,
    from: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<Option<(i64, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "UPDATE orders SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2 \
         RETURNING user_id, amount",
    )
    .bind(order_id)
    .bind(from)
    .bind(to)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Gives the units of order `order_id`'s general lines back to their items' stock (a drop's
/// units come back through its actor: they are counted from the orders).
pub(super) async fn give_back_general_stock(
    tx: &mut sql::Tx<'_>,
    order_id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE items SET stock = stock + ( \
             SELECT CAST(SUM(l.quantity) AS BIGINT) FROM order_lines l \
             WHERE l.order_id = $1 AND l.item_id = items.id), updated_at = $2 \
         WHERE id IN (SELECT item_id FROM order_lines WHERE order_id = $1) \
           AND NOT EXISTS (SELECT 1 FROM drops d WHERE d.item_id = items.id)",
    )
    .bind(order_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues a refund of `amount` of `payment` for `reason` (once per payment and reason).
pub(super) async fn queue_refund(
    tx: &mut sql::Tx<'_>,
    payment: &PaymentRecord,
    amount: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let id: i64 = sqlx::query_scalar(
        "UPDATE id_blocks SET next_id = next_id + 1 WHERE name = 'refunds' RETURNING next_id - 1",
    )
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO refunds (id, payment_id, order_id, provider, amount, reason, status, \
             created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7) \
         ON CONFLICT (payment_id, reason) DO NOTHING",
    )
    .bind(id)
    .bind(payment.id)
    .bind(payment.order_id)
    .bind(&payment.provider)
    .bind(amount)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
