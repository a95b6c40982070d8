//! The [`Store`] basics: health, settings, id blocks, and the drops claim (each backend's own
//! lock).

use super::super::*;

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        BACKEND
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.reads()).await?;
        Ok(())
    }

    async fn setting_or_init(&self, key: &str, init: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(key)
            .bind(init)
            .execute(self.writes())
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(self.reads())
                .await?,
        )
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.writes())
        .await?;
        Ok(())
    }

    async fn allocate_ids(&self, name: &str, count: u32) -> Result<i64, StoreError> {
        let next: i64 = sqlx::query_scalar(
            "UPDATE id_blocks SET next_id = next_id + $2 WHERE name = $1 RETURNING next_id",
        )
        .bind(name)
        .bind(i64::from(count))
        .fetch_one(self.writes())
        .await?;
        Ok(next - i64::from(count))
    }

    async fn claim_drops(&self) -> Result<bool, StoreError> {
        self.claim().await
    }

    async fn release_drops(&self) {
        self.release().await;
    }
}
