//! Refresh tokens and revoked access tokens (times as [`TokenTime`]).

use super::super::*;
use crate::store::SessionStore;

const INSERT_REFRESH_TOKEN: &str =
    "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5)";

/// Makes the rotations and revocations of `user_id`'s refresh tokens take turns until `tx`
/// ends, by locking the user's row. Under READ COMMITTED a statement only sees the rows
/// committed when it starts: a revocation's `UPDATE` racing a rotation would revoke the
/// presented token (waiting for its lock) but not the successor the rotation inserts. With the
/// lock taken first, every statement after it sees what the previous holder committed: a
/// revocation sees the successor, a rotation sees the revocation and refuses. (SQLite's one
/// writer connection runs one write transaction at a time already.)
async fn lock_sessions_of(tx: &mut super::Tx<'_>, user_id: i64) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "SELECT id FROM users WHERE id = $1{FOR_NO_KEY_UPDATE}"
    ))
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError> {
        sqlx::query(INSERT_REFRESH_TOKEN)
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
        successor: &RefreshSuccessor,
        now: DateTime<Utc>,
    ) -> Result<RefreshUse, StoreError> {
        let mut tx = self.begin_guarded().await?;
        let owner: Option<i64> =
            sqlx::query_scalar("SELECT user_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(user_id) = owner else {
            return Ok(RefreshUse::Invalid);
        };
        lock_sessions_of(&mut tx, user_id).await?;
        let rotated: Option<String> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > $2 RETURNING family_id",
        )
        .bind(token_hash)
        .bind(token_time(now))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(family_id) = rotated {
            sqlx::query(INSERT_REFRESH_TOKEN)
                .bind(&successor.token_hash)
                .bind(user_id)
                .bind(&family_id)
                .bind(token_time(now))
                .bind(token_time(successor.expires_at))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(RefreshUse::Rotated { user_id, family_id });
        }
        let used: Option<String> = sqlx::query_scalar(
            "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NOT NULL",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(family_id) = used else {
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
        let mut tx = self.begin_guarded().await?;
        lock_sessions_of(&mut tx, user_id).await?;
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $3 WHERE revoked_at IS NULL AND family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(token_time(Utc::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(revoked.rows_affected() > 0)
    }

    async fn revoke_user_families(
        &self,
        user_id: i64,
        keep_family: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_guarded().await?;
        lock_sessions_of(&mut tx, user_id).await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL \
             AND family_id IS DISTINCT FROM $2",
        )
        .bind(user_id)
        .bind(keep_family)
        .bind(token_time(Utc::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
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

    async fn tokens_valid_after(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(i64, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(i64, ValidAfterTime)> = sqlx::query_as(
            "SELECT id, tokens_valid_after FROM users WHERE tokens_valid_after > $1",
        )
        .bind(valid_after_time(since))
        .fetch_all(self.reads())
        .await?;
        rows.into_iter()
            .map(|(user_id, at)| Ok((user_id, from_valid_after_time(at)?)))
            .collect()
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
