//! Orders: reads, keys and the drop audit; the batch write, its settling, a general order's
//! placement and a status change are each backend's own (`commit`, `settle`, `place`,
//! `transition`).

use super::super::*;
use crate::comparison::DropOrderTuple;
use crate::store::OrderStore;
use crate::DropOrderRow;

const ORDER_COLUMNS: &str = "id, user_id, status, amount, payment_due_at, created_at";

#[async_trait]
impl OrderStore for SqlStore {
    async fn commit_orders(&self, orders: &[NewOrder]) -> Result<Vec<i64>, StoreError> {
        self.commit(orders).await
    }

    async fn settle_orders(&self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        self.settle(ids).await
    }

    async fn place_order(&self, order: &NewGeneralOrder) -> Result<Placement, StoreError> {
        self.place(order).await
    }

    async fn order_by_id(&self, id: i64) -> Result<Option<OrderRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id)
            .fetch_all(self.reads())
            .await?;
        Ok(self.with_lines(rows).await?.pop())
    }

    async fn list_orders(
        &self,
        user_id: i64,
        page: u32,
        size: u32,
    ) -> Result<Page<OrderRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(user_id)
        .bind(i64::from(size))
        .bind(i64::from(page) * i64::from(size))
        .fetch_all(self.reads())
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(self.reads())
            .await?;
        Ok(Page {
            rows: self.with_lines(rows).await?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn transition_order(
        &self,
        order_id: i64,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        self.transition(order_id, from, to).await
    }

    async fn orders_in_status(
        &self,
        user_id: i64,
        status: &str,
    ) -> Result<Vec<OrderRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 AND status = $2 ORDER BY id"
        ))
        .bind(user_id)
        .bind(status)
        .fetch_all(self.reads())
        .await?;
        self.with_lines(rows).await
    }

    async fn idempotency_record(
        &self,
        user_id: i64,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row: Option<(String, i32, Option<i64>)> = sqlx::query_as(
            "SELECT request_hash, status_code, order_id FROM idempotency_keys \
             WHERE user_id = $1 AND key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(self.reads())
        .await?;
        Ok(
            row.map(|(request_hash, status_code, order_id)| IdempotencyRecord {
                request_hash,
                status_code: u16::try_from(status_code).unwrap_or(500),
                order_id,
            }),
        )
    }

    async fn users_with_idempotency_keys(&self) -> Result<Vec<i64>, StoreError> {
        let users: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT user_id FROM idempotency_keys")
            .fetch_all(self.reads())
            .await?;
        Ok(users)
    }

    async fn drop_orders(&self, item_id: i64) -> Result<Vec<DropOrderRow>, StoreError> {
        // Keys joined by order id through one aggregate (a lookup per order by user would scan
        // each buyer's keys once per order: minutes for a large drop).
        let rows: Vec<DropOrderTuple> = sqlx::query_as(
            "SELECT o.id, o.user_id, l.units, o.status, k.key \
             FROM (SELECT order_id, CAST(SUM(quantity) AS BIGINT) AS units FROM order_lines \
                   WHERE item_id = $1 GROUP BY order_id) AS l \
             JOIN orders o ON o.id = l.order_id \
             LEFT JOIN (SELECT order_id, MIN(key) AS key FROM idempotency_keys \
                        WHERE order_id IN (SELECT order_id FROM order_lines WHERE item_id = $1) \
                        GROUP BY order_id) AS k ON k.order_id = o.id \
             ORDER BY o.id",
        )
        .bind(item_id)
        .fetch_all(self.reads())
        .await?;
        Ok(rows.into_iter().map(DropOrderRow::from).collect())
    }
}

impl SqlStore {
    /// The orders of `rows` with their lines (read by `lines_of`, the backend's).
    async fn with_lines(&self, rows: Vec<DbRow>) -> Result<Vec<OrderRecord>, StoreError> {
        let mut orders = rows
            .iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<i64> = orders.iter().map(|order| order.id).collect();
        attach_lines(&mut orders, self.lines_of(&ids).await?);
        Ok(orders)
    }
}
