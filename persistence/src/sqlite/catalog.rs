//! Items and drops on SQLite.

use super::*;
use crate::store::check_new_item;
use crate::store::item_created_payload;
use crate::store::CatalogStore;

#[async_trait]
impl CatalogStore for SqliteStore {
    async fn create_item(&self, item: &NewItem) -> Result<ItemRecord, StoreError> {
        check_new_item(item)?;
        let created_at = Utc::now().trunc_subsecs(6);
        let mut tx = self.writer.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO items (seller_id, name, description, price, stock, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(item.seller_id)
        .bind(&item.name)
        .bind(&item.description)
        .bind(item.price)
        .bind(item.stock)
        .bind(created_at)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(drop) = &item.drop {
            sqlx::query(
                "INSERT INTO drops (item_id, opens_at, closes_at, per_user_limit, total_units) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(drop.opens_at)
            .bind(drop.closes_at)
            .bind(i64::from(drop.per_user_limit))
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
             WHERE i.id = ? AND i.deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn list_items(&self, page: u32, size: u32) -> Result<Page<ItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM items i LEFT JOIN drops d ON d.item_id = i.id \
             WHERE i.deleted_at IS NULL ORDER BY i.id LIMIT ? OFFSET ?"
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(size))
            .bind(i64::from(page) * i64::from(size))
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE deleted_at IS NULL")
            .fetch_one(&self.pool)
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
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // Timestamps are text here: compare them as times, not as strings.
        Ok(items
            .into_iter()
            .filter(|item| item.drop.as_ref().is_some_and(|drop| drop.closes_at > now))
            .collect())
    }

    async fn drop_sales(&self, item_id: i64) -> Result<DropSales, StoreError> {
        let per_user: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT o.user_id, SUM(l.quantity) FROM order_lines l \
             JOIN orders o ON o.id = l.order_id \
             WHERE l.item_id = ? AND o.status NOT IN (?, ?, ?, ?) GROUP BY o.user_id",
        )
        .bind(item_id)
        .bind(RELEASING_STATUSES[0])
        .bind(RELEASING_STATUSES[1])
        .bind(RELEASING_STATUSES[2])
        .bind(RELEASING_STATUSES[3])
        .fetch_all(&self.pool)
        .await?;
        Ok(DropSales { per_user })
    }

    async fn update_item(
        &self,
        id: i64,
        seller_id: i64,
        change: &ItemChange,
    ) -> Result<Option<ItemRecord>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "UPDATE items SET name = COALESCE(?3, name), description = COALESCE(?4, description), \
             price = COALESCE(?5, price), updated_at = ?6 \
             WHERE id = ?1 AND seller_id = ?2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(seller_id)
        .bind(&change.name)
        .bind(&change.description)
        .bind(change.price)
        .bind(Utc::now().trunc_subsecs(6))
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
        let mut tx = self.writer.begin().await?;
        let deleted = sqlx::query(
            "UPDATE items SET deleted_at = ?3, updated_at = ?3 \
             WHERE id = ?1 AND seller_id = ?2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(seller_id)
        .bind(Utc::now().trunc_subsecs(6))
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
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(i64, bool)> = sqlx::query_as(
            "SELECT i.stock, EXISTS (SELECT 1 FROM drops d WHERE d.item_id = i.id) FROM items i \
             WHERE i.id = ? AND i.seller_id = ? AND i.deleted_at IS NULL",
        )
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
        sqlx::query("UPDATE items SET stock = ?, updated_at = ? WHERE id = ?")
            .bind(after)
            .bind(Utc::now().trunc_subsecs(6))
            .bind(id)
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
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE drops SET total_units = total_units + ? WHERE item_id = ?")
            .bind(delta)
            .bind(item_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE items SET stock = stock + ?, updated_at = ? WHERE id = ?")
            .bind(delta)
            .bind(Utc::now().trunc_subsecs(6))
            .bind(item_id)
            .execute(&mut *tx)
            .await?;
        let payload = serde_json::json!({ "item_id": item_id, "delta": delta });
        enqueue_event(&mut tx, "item.stock_adjusted", item_id, payload).await?;
        tx.commit().await?;
        Ok(())
    }
}
