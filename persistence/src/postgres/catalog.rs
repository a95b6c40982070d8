//! Items and drops on PostgreSQL.

use super::*;
use crate::store::check_new_item;
use crate::store::item_created_payload;
use crate::store::CatalogStore;

#[async_trait]
impl CatalogStore for PgStore {
    async fn create_item(&self, item: &NewItem) -> Result<ItemRecord, StoreError> {
        check_new_item(item)?;
        let mut tx = self.pool.begin().await?;
        let (id, created_at): (i64, DateTime<Utc>) = sqlx::query_as(
            "INSERT INTO items (seller_id, name, description, price, stock, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, now(), now()) RETURNING id, created_at",
        )
        .bind(item.seller_id)
        .bind(&item.name)
        .bind(&item.description)
        .bind(item.price)
        .bind(item.stock)
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
            .bind(i32::try_from(drop.per_user_limit).unwrap_or_default())
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
            .fetch_optional(&self.pool)
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
             WHERE i.deleted_at IS NULL AND d.closes_at > $1 ORDER BY i.id"
        );
        let rows = sqlx::query(&sql).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(item_from_row).collect()
    }

    async fn drop_sales(&self, item_id: i64) -> Result<DropSales, StoreError> {
        let per_user: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT o.user_id, SUM(l.quantity)::BIGINT FROM order_lines l \
             JOIN orders o ON o.id = l.order_id \
             WHERE l.item_id = $1 AND NOT (o.status = ANY($2)) GROUP BY o.user_id",
        )
        .bind(item_id)
        .bind(&RELEASING_STATUSES[..])
        .fetch_all(&self.pool)
        .await?;
        Ok(DropSales { per_user })
    }
}
