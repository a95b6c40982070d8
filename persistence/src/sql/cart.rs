//! Carts and wishlists.

use super::super::*;
use crate::store::{CartStore, CatalogStore};

#[async_trait]
impl CartStore for SqlStore {
    async fn cart(&self, user_id: i64) -> Result<Vec<CartLine>, StoreError> {
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT c.item_id, i.name, i.price, c.quantity FROM cart_items c \
             JOIN items i ON i.id = c.item_id AND i.deleted_at IS NULL \
             WHERE c.user_id = $1 ORDER BY c.added_at, c.item_id",
        )
        .bind(user_id)
        .fetch_all(self.reads())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(item_id, name, price, quantity)| CartLine {
                item_id,
                name,
                price,
                quantity,
            })
            .collect())
    }

    async fn set_cart_item(
        &self,
        user_id: i64,
        item_id: i64,
        quantity: i64,
    ) -> Result<bool, StoreError> {
        if quantity <= 0 {
            self.remove_cart_item(user_id, item_id).await?;
            return Ok(self.item_by_id(item_id).await?.is_some());
        }
        let written = sqlx::query(
            "INSERT INTO cart_items (user_id, item_id, quantity, added_at) \
             SELECT $1, id, $3, $4 FROM items WHERE id = $2 AND deleted_at IS NULL \
             ON CONFLICT (user_id, item_id) DO UPDATE SET quantity = excluded.quantity",
        )
        .bind(user_id)
        .bind(item_id)
        .bind(quantity)
        .bind(now_micros())
        .execute(self.writes())
        .await?
        .rows_affected();
        Ok(written > 0)
    }

    async fn remove_cart_item(&self, user_id: i64, item_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cart_items WHERE user_id = $1 AND item_id = $2")
            .bind(user_id)
            .bind(item_id)
            .execute(self.writes())
            .await?;
        Ok(())
    }

    async fn clear_cart(&self, user_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cart_items WHERE user_id = $1")
            .bind(user_id)
            .execute(self.writes())
            .await?;
        Ok(())
    }

    async fn wishlist(&self, user_id: i64) -> Result<Vec<ItemRecord>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM wishlist_items w \
             JOIN items i ON i.id = w.item_id AND i.deleted_at IS NULL \
             LEFT JOIN drops d ON d.item_id = i.id \
             WHERE w.user_id = $1 ORDER BY w.added_at, w.item_id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(self.reads())
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    async fn add_wishlist_item(&self, user_id: i64, item_id: i64) -> Result<bool, StoreError> {
        sqlx::query(
            "INSERT INTO wishlist_items (user_id, item_id, added_at) \
             SELECT $1, id, $3 FROM items WHERE id = $2 AND deleted_at IS NULL \
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(item_id)
        .bind(now_micros())
        .execute(self.writes())
        .await?;
        Ok(self.item_by_id(item_id).await?.is_some())
    }

    async fn remove_wishlist_item(&self, user_id: i64, item_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM wishlist_items WHERE user_id = $1 AND item_id = $2")
            .bind(user_id)
            .bind(item_id)
            .execute(self.writes())
            .await?;
        Ok(())
    }
}
