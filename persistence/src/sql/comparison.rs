//! The `pg_row` stock strategy: a stock row locked by each purchase (SQLite's one writer
//! connection plays the part of PostgreSQL's row lock).

use super::super::orders::insert_orders;
use super::super::*;
use super::RELEASING;
use crate::comparison::{refusal, single_line, within_limit, ComparisonStore};
use crate::RowPurchase;

/// Units of `item_id` that `user_id` holds (in orders that have not released them).
async fn held_by(
    conn: &mut <Db as sqlx::Database>::Connection,
    user_id: i64,
    item_id: i64,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) FROM orders o \
         JOIN order_lines l ON l.order_id = o.id \
         WHERE o.user_id = $1 AND l.item_id = $2 AND o.status NOT IN {RELEASING}"
    ))
    .bind(user_id)
    .bind(item_id)
    .fetch_one(conn)
    .await?)
}

#[async_trait]
impl ComparisonStore for SqlStore {
    async fn init_row_stock(&self, item_id: i64) -> Result<Option<i64>, StoreError> {
        sqlx::query(&format!(
            "INSERT INTO drop_row_stock (item_id, remaining) \
             SELECT d.item_id, {GREATEST}(d.total_units - COALESCE(( \
                 SELECT SUM(l.quantity) FROM order_lines l JOIN orders o ON o.id = l.order_id \
                 WHERE l.item_id = d.item_id AND o.status NOT IN {RELEASING}), 0), 0) \
             FROM drops d WHERE d.item_id = $1 \
             ON CONFLICT (item_id) DO NOTHING"
        ))
        .bind(item_id)
        .execute(self.writes())
        .await?;
        self.row_stock(item_id).await
    }

    async fn purchase_row(
        &self,
        order: &NewOrder,
        per_user_limit: u32,
    ) -> Result<RowPurchase, StoreError> {
        let (item_id, quantity) = single_line(order)?;
        // Dropping the transaction before its commit rolls it back: every early return below
        // gives the units back.
        let mut tx = self.begin_guarded().await?;
        let taken = sqlx::query(
            "UPDATE drop_row_stock SET remaining = remaining - $2 \
             WHERE item_id = $1 AND remaining >= $2",
        )
        .bind(item_id)
        .bind(quantity)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            let remaining: Option<i64> =
                sqlx::query_scalar("SELECT remaining FROM drop_row_stock WHERE item_id = $1")
                    .bind(item_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let held = match remaining {
                Some(units) if units > 0 => held_by(&mut tx, order.user_id, item_id).await?,
                _ => 0,
            };
            return refusal(remaining, held, quantity, per_user_limit);
        }
        let held = held_by(&mut tx, order.user_id, item_id).await?;
        if !within_limit(held, quantity, per_user_limit) {
            return Ok(RowPurchase::LimitReached);
        }
        if insert_orders(&mut tx, std::slice::from_ref(order))
            .await?
            .is_empty()
        {
            // The key was stored before: the units go back with the rollback.
            tx.rollback().await?;
            return Ok(RowPurchase::Repeat);
        }
        tx.commit().await.map_err(StoreError::from_write)?;
        Ok(RowPurchase::Placed)
    }

    async fn row_stock(&self, item_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT remaining FROM drop_row_stock WHERE item_id = $1")
                .bind(item_id)
                .fetch_optional(self.reads())
                .await?,
        )
    }
}
