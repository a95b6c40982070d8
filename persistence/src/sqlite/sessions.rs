//! Refresh tokens and revoked access tokens on SQLite.

use super::*;
use crate::store::SessionStore;

#[async_trait]
impl SessionStore for SqliteStore {
    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&token.token_hash)
        .bind(token.user_id)
        .bind(&token.family_id)
        .bind(Utc::now().timestamp())
        .bind(token.expires_at.timestamp())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<RefreshUse, StoreError> {
        let mut tx = self.writer.begin().await?;
        let rotated: Option<(i64, String)> = sqlx::query_as(
            "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > ?2 RETURNING user_id, family_id",
        )
        .bind(token_hash)
        .bind(now.timestamp())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((user_id, family_id)) = rotated {
            tx.commit().await?;
            return Ok(RefreshUse::Rotated { user_id, family_id });
        }
        let used: Option<(i64, String)> = sqlx::query_as(
            "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = ? AND used_at IS NOT NULL",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, family_id)) = used else {
            return Ok(RefreshUse::Invalid);
        };
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        )
        .bind(&family_id)
        .bind(now.timestamp())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefreshUse::Reused { user_id, family_id })
    }

    async fn revoke_family_of(&self, user_id: i64, token_hash: &str) -> Result<bool, StoreError> {
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ?3 WHERE revoked_at IS NULL AND family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = ?1 AND user_id = ?2)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(Utc::now().timestamp())
        .execute(&self.writer)
        .await?;
        Ok(revoked.rows_affected() > 0)
    }

    async fn revoke_user_families(
        &self,
        user_id: i64,
        keep_family: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ?3 WHERE user_id = ?1 AND revoked_at IS NULL \
             AND family_id IS NOT ?2",
        )
        .bind(user_id)
        .bind(keep_family)
        .bind(Utc::now().timestamp())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn deny_access_token(
        &self,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO denied_access_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at.timestamp())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn denied_access_tokens(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT jti, expires_at FROM denied_access_tokens WHERE expires_at > ?")
                .bind(now.timestamp())
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(jti, expires_at)| {
                DateTime::from_timestamp(expires_at, 0).map(|expires_at| (jti, expires_at))
            })
            .collect())
    }
}
