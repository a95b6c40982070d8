//! Email verification codes (times as [`TokenTime`]).

use super::super::*;
use crate::store::VerificationStore;

#[async_trait]
impl VerificationStore for SqlStore {
    async fn email_code(&self, user_id: i64) -> Result<Option<EmailCodeRecord>, StoreError> {
        let row: Option<(String, i64, TokenTime, i32, bool)> = sqlx::query_as(
            "SELECT code, generation, expires_at, attempts, consumed_at IS NOT NULL \
             FROM email_codes WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.reads())
        .await?;
        row.map(|(code, generation, expires_at, attempts, consumed)| {
            Ok(EmailCodeRecord {
                user_id,
                code,
                generation,
                expires_at: from_token_time(expires_at)?,
                attempts: u32::try_from(attempts).unwrap_or(0),
                consumed,
            })
        })
        .transpose()
    }

    async fn renew_email_code(
        &self,
        user_id: i64,
        code: &NewEmailCode,
        min_interval: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<CodeRenewal, StoreError> {
        // Guarded: concurrent renewals of one user go one after the other.
        let mut tx = self.begin_guarded().await?;
        let unverified: Option<bool> = sqlx::query_scalar(&format!(
            "SELECT NOT email_verified FROM users WHERE id = $1 AND deleted_at IS NULL{FOR_UPDATE}"
        ))
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if unverified != Some(true) {
            return Ok(CodeRenewal::NotNeeded);
        }
        let last: Option<TokenTime> =
            sqlx::query_scalar("SELECT issued_at FROM email_codes WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        if last.is_some_and(|issued_at| issued_at > token_time(now - min_interval)) {
            return Ok(CodeRenewal::TooSoon);
        }
        let generation = upsert_code(&mut tx, user_id, code, now).await?;
        tx.commit().await?;
        Ok(CodeRenewal::Issued { generation })
    }

    async fn take_code_attempt(
        &self,
        user_id: i64,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<CodeAttempt, StoreError> {
        let max = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        let granted: Option<(String, i64)> = sqlx::query_as(
            "UPDATE email_codes SET attempts = attempts + 1 \
             WHERE user_id = $1 AND consumed_at IS NULL AND expires_at > $2 AND attempts < $3 \
             RETURNING code, generation",
        )
        .bind(user_id)
        .bind(token_time(now))
        .bind(max)
        .fetch_optional(self.writes())
        .await?;
        if let Some((code, generation)) = granted {
            return Ok(CodeAttempt::Granted { code, generation });
        }
        let locked: Option<bool> = sqlx::query_scalar(
            "SELECT attempts >= $3 FROM email_codes \
             WHERE user_id = $1 AND consumed_at IS NULL AND expires_at > $2",
        )
        .bind(user_id)
        .bind(token_time(now))
        .bind(max)
        .fetch_optional(self.reads())
        .await?;
        Ok(if locked == Some(true) {
            CodeAttempt::Locked
        } else {
            CodeAttempt::Unavailable
        })
    }

    async fn confirm_email(&self, user_id: i64, generation: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let used = sqlx::query(
            "UPDATE email_codes SET consumed_at = $3 \
             WHERE user_id = $1 AND generation = $2 AND consumed_at IS NULL",
        )
        .bind(user_id)
        .bind(generation)
        .bind(token_time(Utc::now()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE users SET email_verified = TRUE WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        enqueue_event(
            &mut tx,
            "user.email_verified",
            user_id,
            serde_json::json!({ "user_id": user_id }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Stores `code` as the user's live code (a new generation) and writes the event asking for
/// its mail; returns the generation.
pub(in super::super) async fn upsert_code(
    tx: &mut super::Tx<'_>,
    user_id: i64,
    code: &NewEmailCode,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let generation: i64 = sqlx::query_scalar(
        "INSERT INTO email_codes (user_id, code, generation, issued_at, expires_at) \
         VALUES ($1, $2, 1, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET code = excluded.code, \
         generation = email_codes.generation + 1, issued_at = excluded.issued_at, \
         expires_at = excluded.expires_at, attempts = 0, consumed_at = NULL \
         RETURNING generation",
    )
    .bind(user_id)
    .bind(&code.code)
    .bind(token_time(now))
    .bind(token_time(code.expires_at))
    .fetch_one(&mut **tx)
    .await?;
    enqueue_event(
        tx,
        "user.verification_requested",
        user_id,
        serde_json::json!({ "user_id": user_id, "generation": generation }),
    )
    .await?;
    Ok(generation)
}
