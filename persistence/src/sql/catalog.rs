//! Items and drops.

use super::super::*;
use super::RELEASING;
use crate::store::{check_new_item, item_created_payload, CatalogStore};

#[async_trait]
impl CatalogStore for SqlStore {
    async fn create_item(&self, item: &NewItem) -> Result<ItemRecord, StoreError> {
        check_new_item(item)?;
        let created_at = now_micros();
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO items (seller_id, name, description, price, stock, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(item.seller_id)
        .bind(&item.name)
        .bind(&item.description)
        .bind(item.price)
        .bind(item.stock)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(drop) = &item.drop {
            sqlx::query(
                "INSERT INTO drops (item_id, opens_at, closes_at, per_user_limit, total_units) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(drop.opens_at)
            .bind(drop.closes_at)
            .bind(i32::try_from(drop.per_user_limit).unwrap_or(i32::MAX))
            .bind(drop.total_units)
            .execute(&mut *tx)
            .await?;
        }
        enqueue_event(&mut tx, "item.created", id, item_created_payload(id, item)).await?;
        tx.commit().await?;
        Ok(item.to_record(id, created_at))
    }

    async fn item_by_id(&self, id: i64) -> Result<Option<ItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items i LEFT JOIN drops d ON d.item_id = i.id \
             WHERE i.id = $1 AND i.deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.reads())
            .await?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn list_items(&self, page: u32, size: u32) -> Result<Page<ItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items i LEFT JOIN drops d ON d.item_id = i.id \
             WHERE i.deleted_at IS NULL ORDER BY i.id LIMIT $1 OFFSET $2"
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(size))
            .bind(i64::from(page) * i64::from(size))
            .fetch_all(self.reads())
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE deleted_at IS NULL")
            .fetch_one(self.reads())
            .await?;
        Ok(Page {
            rows: rows.iter().map(item_from_row).collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn open_drops(&self, now: DateTime<Utc>) -> Result<Vec<ItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items i JOIN drops d ON d.item_id = i.id \
             WHERE i.deleted_at IS NULL ORDER BY i.id"
        );
        let rows = sqlx::query(&sql).fetch_all(self.reads()).await?;
        let items = rows
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // SQLite keeps times as text: compare them as times here, not as strings there (read
        // once at start, over the drops that exist).
        Ok(items
            .into_iter()
            .filter(|item| item.drop.as_ref().is_some_and(|drop| drop.closes_at > now))
            .collect())
    }

    async fn drop_sales(&self, item_id: i64) -> Result<DropSales, StoreError> {
        let per_user: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT o.user_id, CAST(SUM(l.quantity) AS BIGINT) FROM order_lines l \
             JOIN orders o ON o.id = l.order_id \
             WHERE l.item_id = $1 AND o.status NOT IN {RELEASING} GROUP BY o.user_id"
        ))
        .bind(item_id)
        .fetch_all(self.reads())
        .await?;
        Ok(DropSales { per_user })
    }

    async fn update_item(
        &self,
        id: i64,
        seller_id: i64,
        change: &ItemChange,
    ) -> Result<Option<ItemRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE items SET name = COALESCE($3, name), description = COALESCE($4, description), \
             price = COALESCE($5, price), updated_at = $6 \
             WHERE id = $1 AND seller_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(seller_id)
        .bind(&change.name)
        .bind(&change.description)
        .bind(change.price)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        let payload = serde_json::json!({
            "item_id": id, "name": change.name, "description": change.description, "price": change.price,
        });
        enqueue_event(&mut tx, "item.updated", id, payload).await?;
        tx.commit().await?;
        self.item_by_id(id).await
    }

    async fn delete_item(&self, id: i64, seller_id: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(
            "UPDATE items SET deleted_at = $3, updated_at = $3 \
             WHERE id = $1 AND seller_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(seller_id)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        enqueue_event(
            &mut tx,
            "item.deleted",
            id,
            serde_json::json!({ "item_id": id }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn adjust_stock(
        &self,
        id: i64,
        seller_id: i64,
        delta: i64,
    ) -> Result<StockAdjustment, StoreError> {
        let mut tx = self.begin_guarded().await?;
        let row: Option<(i64, bool)> = sqlx::query_as(&format!(
            "SELECT i.stock, EXISTS (SELECT 1 FROM drops d WHERE d.item_id = i.id) FROM items i \
             WHERE i.id = $1 AND i.seller_id = $2 AND i.deleted_at IS NULL{FOR_UPDATE}"
        ))
        .bind(id)
        .bind(seller_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((stock, is_drop)) = row else {
            return Ok(StockAdjustment::NotFound);
        };
        if is_drop {
            return Ok(StockAdjustment::IsDrop);
        }
        let Some(after) = stock.checked_add(delta).filter(|after| *after >= 0) else {
            return Ok(StockAdjustment::Insufficient);
        };
        sqlx::query("UPDATE items SET stock = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(after)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        let payload = serde_json::json!({ "item_id": id, "delta": delta, "stock": after });
        enqueue_event(&mut tx, "item.stock_adjusted", id, payload).await?;
        tx.commit().await?;
        Ok(match self.item_by_id(id).await? {
            Some(item) => StockAdjustment::Adjusted(item),
            None => StockAdjustment::NotFound,
        })
    }

    async fn adjust_drop_units(&self, item_id: i64, delta: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE drops SET total_units = total_units + $2 WHERE item_id = $1")
            .bind(item_id)
            .bind(delta)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE items SET stock = stock + $2, updated_at = $3 WHERE id = $1")
            .bind(item_id)
            .bind(delta)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        let payload = serde_json::json!({ "item_id": item_id, "delta": delta });
        enqueue_event(&mut tx, "item.stock_adjusted", item_id, payload).await?;
        tx.commit().await?;
        Ok(())
    }
}
