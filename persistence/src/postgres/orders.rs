//! Orders and batched order writes on PostgreSQL.

use super::*;
use crate::store::{order_created_payload, price_lines};

impl PgStore {
    /// [`OrderStore::commit_orders`](crate::OrderStore::commit_orders).
    pub(super) async fn commit(&self, orders: &[NewOrder]) -> Result<Vec<i64>, StoreError> {
        let columns = BatchColumns::from_orders(orders);
        let mut lease = self.writers.checkout().await?;
        let deadline = self.writers.deadline();
        let written =
            tokio::time::timeout(deadline, columns.insert().fetch_all(lease.conn())).await;
        let written = lease.finish(written)?;
        if !written.is_empty() {
            self.outbox_rows_committed();
        }
        Ok(written)
    }

    /// [`OrderStore::settle_orders`](crate::OrderStore::settle_orders).
    pub(super) async fn settle(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        // A connection of its own: what broke the write may have broken the pooled ones too.
        let mut conn = sqlx::PgConnection::connect_with(&self.connect).await?;
        self.writers.fence(&mut conn).await?;
        let stored = sqlx::query_scalar("SELECT id FROM orders WHERE id = ANY($1) ORDER BY id")
            .bind(ids)
            .fetch_all(&mut conn)
            .await?;
        let _ = sqlx::Connection::close(conn).await;
        if !stored.is_empty() {
            // The write in doubt landed, with its outbox rows.
            self.outbox_rows_committed();
        }
        Ok(stored)
    }

    /// [`OrderStore::place_order`](crate::OrderStore::place_order).
    pub(super) async fn place(&self, order: &NewGeneralOrder) -> Result<Placement, StoreError> {
        let mut ids: Vec<i64> = order.lines.iter().map(|(item_id, _)| *item_id).collect();
        ids.sort_unstable();
        let mut tx = self.begin_write().await?;
        // Lock the items in id order (no deadlock between orders sharing items).
        let rows: Vec<(i64, i64, i64, bool)> = sqlx::query_as(
            "SELECT i.id, i.price, i.stock, EXISTS (SELECT 1 FROM drops d WHERE d.item_id = i.id) \
             FROM items i WHERE i.id = ANY($1) AND i.deleted_at IS NULL ORDER BY i.id FOR UPDATE",
        )
        .bind(&ids)
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
        let quantities: Vec<i64> = order.lines.iter().map(|(_, quantity)| *quantity).collect();
        let line_ids: Vec<i64> = order.lines.iter().map(|(item_id, _)| *item_id).collect();
        sqlx::query(
            "UPDATE items i SET stock = i.stock - l.q, updated_at = now() \
             FROM UNNEST($1::int8[], $2::int8[]) AS l(id, q) WHERE i.id = l.id",
        )
        .bind(&line_ids)
        .bind(&quantities)
        .execute(&mut *tx)
        .await?;
        let written = insert_orders(&mut tx, std::slice::from_ref(&new_order)).await?;
        if written.is_empty() {
            // The key was stored before: nothing of this order may stay.
            tx.rollback().await?;
            return Ok(Placement::Repeat);
        }
        if order.from_cart {
            sqlx::query("DELETE FROM cart_items WHERE user_id = $1 AND item_id = ANY($2)")
                .bind(order.user_id)
                .bind(&line_ids)
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
        let changed: Option<i64> = sqlx::query_scalar(
            "WITH changed AS ( \
                 UPDATE orders SET status = $3, updated_at = now() \
                 WHERE id = $1 AND status = $2 RETURNING id, user_id, amount), \
             events AS ( \
                 INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
                 SELECT gen_random_uuid(), 'order.' || $3, 1, id, now(), \
                        json_build_object('order_id', id, 'user_id', user_id, 'amount', amount, \
                                          'from', $2::text, 'status', $3::text) \
                 FROM changed) \
             SELECT id FROM changed",
        )
        .bind(order_id)
        .bind(from)
        .bind(to)
        .fetch_optional(&self.pool)
        .await?;
        if changed.is_some() {
            self.outbox_rows_committed();
        }
        Ok(changed.is_some())
    }
}

/// A batch of orders turned into one array per column, for `UNNEST` (texts borrowed from the
/// orders).
#[derive(Default)]
struct BatchColumns<'a> {
    order_ids: Vec<i64>,
    user_ids: Vec<i64>,
    statuses: Vec<&'a str>,
    amounts: Vec<i64>,
    due: Vec<Option<DateTime<Utc>>>,
    created: Vec<DateTime<Utc>>,
    line_order_ids: Vec<i64>,
    line_numbers: Vec<i32>,
    line_item_ids: Vec<i64>,
    line_quantities: Vec<i64>,
    line_prices: Vec<i64>,
    line_amounts: Vec<i64>,
    key_user_ids: Vec<i64>,
    keys: Vec<&'a str>,
    key_hashes: Vec<&'a str>,
    key_order_ids: Vec<i64>,
    keyed: Vec<bool>,
    event_ids: Vec<uuid::Uuid>,
    payloads: Vec<String>,
}

impl<'a> BatchColumns<'a> {
    fn from_orders(orders: &'a [NewOrder]) -> Self {
        let mut columns = BatchColumns {
            order_ids: Vec::with_capacity(orders.len()),
            user_ids: Vec::with_capacity(orders.len()),
            statuses: Vec::with_capacity(orders.len()),
            amounts: Vec::with_capacity(orders.len()),
            due: Vec::with_capacity(orders.len()),
            created: Vec::with_capacity(orders.len()),
            keyed: Vec::with_capacity(orders.len()),
            event_ids: Vec::with_capacity(orders.len()),
            payloads: Vec::with_capacity(orders.len()),
            ..BatchColumns::default()
        };
        for order in orders {
            columns.order_ids.push(order.id);
            columns.user_ids.push(order.user_id);
            columns.statuses.push(&order.status);
            columns.amounts.push(order.amount);
            columns.due.push(order.payment_due_at);
            columns.created.push(order.created_at);
            for (line_no, line) in (1_i32..).zip(&order.lines) {
                columns.line_order_ids.push(order.id);
                columns.line_numbers.push(line_no);
                columns.line_item_ids.push(line.item_id);
                columns.line_quantities.push(line.quantity);
                columns.line_prices.push(line.unit_price);
                columns.line_amounts.push(line.amount);
            }
            if let Some(entry) = &order.idempotency {
                columns.key_user_ids.push(order.user_id);
                columns.keys.push(&entry.key);
                columns.key_hashes.push(&entry.request_hash);
                columns.key_order_ids.push(order.id);
            }
            columns.keyed.push(order.idempotency.is_some());
            columns.event_ids.push(uuid::Uuid::new_v4());
            columns.payloads.push(order_created_payload(order));
        }
        columns
    }

    /// The batch as one statement (one round trip, atomic without BEGIN/COMMIT), answering
    /// the ids it wrote. Data-modifying CTEs see one snapshot, so they are chained through
    /// what they return: the keys go in first with `ON CONFLICT DO NOTHING` (a key stored
    /// before, or by a concurrent batch, which the unique check waits for, is left out and
    /// returns nothing); `kept` is every unkeyed order and every keyed one whose key went in;
    /// the orders, their lines and their `order.created` events are written for `kept` only.
    /// Foreign keys are checked at the end of the statement, when the orders exist.
    fn insert(
        &self,
    ) -> sqlx::query::QueryScalar<'_, sqlx::Postgres, i64, sqlx::postgres::PgArguments> {
        sqlx::query_scalar(
            "WITH new_keys AS ( \
                 INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, order_id, created_at) \
                 SELECT u, k, h, 201, o, now() FROM UNNEST($13::int8[], $14::text[], $15::text[], $16::int8[]) \
                     AS t(u, k, h, o) \
                 ON CONFLICT DO NOTHING RETURNING order_id), \
             kept AS ( \
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::int8[], \
                     $5::timestamptz[], $6::timestamptz[], $17::bool[], $18::uuid[], $19::text[]) \
                     AS t(id, user_id, status, amount, due, created, keyed, event_id, payload) \
                 WHERE NOT keyed OR id IN (SELECT order_id FROM new_keys)), \
             new_orders AS ( \
                 INSERT INTO orders (id, user_id, status, amount, payment_due_at, created_at, updated_at) \
                 SELECT id, user_id, status, amount, due, created, created FROM kept), \
             new_lines AS ( \
                 INSERT INTO order_lines (order_id, line_no, item_id, quantity, unit_price, amount) \
                 SELECT * FROM UNNEST($7::int8[], $8::int4[], $9::int8[], $10::int8[], $11::int8[], $12::int8[]) \
                     AS l(order_id, line_no, item_id, quantity, unit_price, amount) \
                 WHERE order_id IN (SELECT id FROM kept)), \
             new_events AS ( \
                 INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
                 SELECT event_id, 'order.created', 1, id, created, payload::json FROM kept) \
             SELECT id FROM kept ORDER BY id",
        )
        .bind(&self.order_ids)
        .bind(&self.user_ids)
        .bind(&self.statuses)
        .bind(&self.amounts)
        .bind(&self.due)
        .bind(&self.created)
        .bind(&self.line_order_ids)
        .bind(&self.line_numbers)
        .bind(&self.line_item_ids)
        .bind(&self.line_quantities)
        .bind(&self.line_prices)
        .bind(&self.line_amounts)
        .bind(&self.key_user_ids)
        .bind(&self.keys)
        .bind(&self.key_hashes)
        .bind(&self.key_order_ids)
        .bind(&self.keyed)
        .bind(&self.event_ids)
        .bind(&self.payloads)
    }
}

/// Writes `orders` on `conn` (inside the caller's transaction) as [`BatchColumns::insert`]
/// does; answers the ids written.
pub(super) async fn insert_orders(
    tx: &mut sql::Tx<'_>,
    orders: &[NewOrder],
) -> Result<Vec<i64>, StoreError> {
    let written: Vec<i64> = BatchColumns::from_orders(orders)
        .insert()
        .fetch_all(&mut **tx)
        .await?;
    if !written.is_empty() {
        tx.wrote_outbox();
    }
    Ok(written)
}
