//! Refresh tokens and revoked access tokens (times as [`TokenTime`]).

use super::super::*;
use crate::store::SessionStore;

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.token_hash)
        .bind(token.user_id)
        .bind(&token.family_id)
        .bind(token_time(Utc::now()))
        .bind(token_time(token.expires_at))
        .execute(self.writes())
        .await?;
        Ok(())
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<RefreshUse, StoreError> {
        let mut tx = self.writes().begin().await?;
        let rotated: Option<(i64, String)> = sqlx::query_as(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > $2 RETURNING user_id, family_id",
        )
        .bind(token_hash)
        .bind(token_time(now))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((user_id, family_id)) = rotated {
            tx.commit().await?;
            return Ok(RefreshUse::Rotated { user_id, family_id });
        }
        let used: Option<(i64, String)> = sqlx::query_as(
            "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NOT NULL",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, family_id)) = used else {
            return Ok(RefreshUse::Invalid);
        };
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(&family_id)
        .bind(token_time(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefreshUse::Reused { user_id, family_id })
    }

    async fn revoke_family_of(&self, user_id: i64, token_hash: &str) -> Result<bool, StoreError> {
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $3 WHERE revoked_at IS NULL AND family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(token_time(Utc::now()))
        .execute(self.writes())
        .await?;
        Ok(revoked.rows_affected() > 0)
    }

    async fn revoke_user_families(
        &self,
        user_id: i64,
        keep_family: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL \
             AND family_id IS DISTINCT FROM $2",
        )
        .bind(user_id)
        .bind(keep_family)
        .bind(token_time(Utc::now()))
        .execute(self.writes())
        .await?;
        Ok(())
    }

    async fn deny_access_token(
        &self,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO denied_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(jti)
        .bind(token_time(expires_at))
        .execute(self.writes())
        .await?;
        Ok(())
    }

    async fn denied_access_tokens(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, TokenTime)> = sqlx::query_as(
            "SELECT jti, expires_at FROM denied_access_tokens WHERE expires_at > $1",
        )
        .bind(token_time(now))
        .fetch_all(self.reads())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(jti, expires_at)| Some((jti, from_token_time(expires_at).ok()?)))
            .collect())
    }
}
