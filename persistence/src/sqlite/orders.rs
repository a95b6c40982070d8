//! Orders and batched order writes on SQLite.

use super::*;
use crate::store::{order_created_payload, price_lines};

impl SqliteStore {
    /// [`OrderStore::commit_orders`](crate::OrderStore::commit_orders).
    pub(super) async fn commit(&self, orders: &[NewOrder]) -> Result<Vec<i64>, StoreError> {
        // Waiting for the one writer connection sends nothing: only the write can be in doubt.
        let mut conn = self.writer.acquire().await?;
        let write = async {
            let mut tx = sql::Tx::new(
                sqlx::Connection::begin(&mut *conn).await?,
                &self.outbox_written,
            );
            let written = insert_orders(&mut tx, orders).await?;
            tx.commit().await.map_err(StoreError::from_write)?;
            Ok(written)
        };
        // A write cut off here is rolled back, or committed, before the writer connection
        // does anything else: settle_orders reads through that same connection.
        tokio::time::timeout(self.write_deadline, write)
            .await
            .unwrap_or_else(|_| Err(StoreError::InDoubt("no answer in time".into())))
    }

    /// [`OrderStore::settle_orders`](crate::OrderStore::settle_orders).
    pub(super) async fn settle(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let ids_json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
        let stored: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM orders WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
        )
        .bind(ids_json)
        .fetch_all(&self.writer)
        .await?;
        if !stored.is_empty() {
            // The write in doubt landed, with its outbox rows.
            self.outbox_rows_committed();
        }
        Ok(stored)
    }

    /// [`OrderStore::place_order`](crate::OrderStore::place_order).
    pub(super) async fn place(&self, order: &NewGeneralOrder) -> Result<Placement, StoreError> {
        let ids: Vec<i64> = order.lines.iter().map(|(item_id, _)| *item_id).collect();
        let ids_json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned());
        // IMMEDIATE: the write lock from the start, so the stock read is the stock written.
        let mut tx = self.begin_guarded().await?;
        let rows: Vec<(i64, i64, i64, bool)> = sqlx::query_as(
            "SELECT i.id, i.price, i.stock, EXISTS (SELECT 1 FROM drops d WHERE d.item_id = i.id) \
             FROM items i WHERE i.id IN (SELECT value FROM json_each(?)) AND i.deleted_at IS NULL",
        )
        .bind(&ids_json)
        .fetch_all(&mut *tx)
        .await?;
        let found: std::collections::HashMap<i64, (i64, i64, bool)> = rows
            .into_iter()
            .map(|(id, price, stock, is_drop)| (id, (price, stock, is_drop)))
            .collect();
        let new_order = match price_lines(order, &found) {
            Ok(new_order) => new_order,
            Err(rejection) => return Ok(rejection),
        };
        let now = now_micros();
        for &(item_id, quantity) in &order.lines {
            sqlx::query("UPDATE items SET stock = stock - ?, updated_at = ? WHERE id = ?")
                .bind(quantity)
                .bind(now)
                .bind(item_id)
                .execute(&mut *tx)
                .await?;
        }
        if insert_orders(&mut tx, std::slice::from_ref(&new_order))
            .await?
            .is_empty()
        {
            // The key was stored before: nothing of this order may stay.
            tx.rollback().await?;
            return Ok(Placement::Repeat);
        }
        if order.from_cart {
            sqlx::query(
                "DELETE FROM cart_items WHERE user_id = ? \
                 AND item_id IN (SELECT value FROM json_each(?))",
            )
            .bind(order.user_id)
            .bind(&ids_json)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.map_err(StoreError::from_write)?;
        Ok(Placement::Placed(new_order.to_record()))
    }

    /// [`OrderStore::transition_order`](crate::OrderStore::transition_order).
    pub(super) async fn transition(
        &self,
        order_id: i64,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        let now = now_micros();
        let mut tx = self.begin_write().await?;
        let changed: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE orders SET status = ?3, updated_at = ?4 WHERE id = ?1 AND status = ?2 \
             RETURNING user_id, amount",
        )
        .bind(order_id)
        .bind(from)
        .bind(to)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, amount)) = changed else {
            return Ok(false);
        };
        let payload = serde_json::json!({
            "order_id": order_id, "user_id": user_id, "amount": amount, "from": from, "status": to,
        });
        enqueue_event(&mut tx, &format!("order.{to}"), order_id, payload).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Writes orders with their lines, idempotency keys and `order.created` events on `conn`
/// (inside the caller's transaction); answers the ids written. A keyed order whose key the
/// user stored before is left out.
pub(super) async fn insert_orders(
    tx: &mut sql::Tx<'_>,
    orders: &[NewOrder],
) -> Result<Vec<i64>, StoreError> {
    let mut written = Vec::with_capacity(orders.len());
    for order in orders {
        if let Some(entry) = &order.idempotency {
            let fresh = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, order_id, created_at) \
                 VALUES (?, ?, ?, 201, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(order.user_id)
            .bind(&entry.key)
            .bind(&entry.request_hash)
            .bind(order.id)
            .bind(order.created_at)
            .execute(&mut **tx)
            .await?
            .rows_affected()
                == 1;
            if !fresh {
                continue;
            }
        }
        sqlx::query(
            "INSERT INTO orders (id, user_id, status, amount, payment_due_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(order.id)
        .bind(order.user_id)
        .bind(&order.status)
        .bind(order.amount)
        .bind(order.payment_due_at)
        .bind(order.created_at)
        .bind(order.created_at)
        .execute(&mut **tx)
        .await?;
        for (line_no, line) in (1_i64..).zip(&order.lines) {
            sqlx::query(
                "INSERT INTO order_lines (order_id, line_no, item_id, quantity, unit_price, amount) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(order.id)
            .bind(line_no)
            .bind(line.item_id)
            .bind(line.quantity)
            .bind(line.unit_price)
            .bind(line.amount)
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
             VALUES (?, 'order.created', 1, ?, ?, ?)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(order.id)
        .bind(order.created_at)
        .bind(order_created_payload(order))
        .execute(&mut **tx)
        .await?;
        tx.wrote_outbox();
        written.push(order.id);
    }
    Ok(written)
}
