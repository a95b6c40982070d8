//! Accounts and roles.

use super::super::*;
use crate::store::UserStore;

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO users (id, email, email_index, password_hash, name, phone, address, email_verified, created_at) \
             VALUES ($9, $1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING id, email, password_hash, name, phone, address, email_verified, created_at",
        )
        .bind(&user.email)
        .bind(&user.email_index)
        .bind(&user.password_hash)
        .bind(&user.name)
        .bind(&user.phone)
        .bind(&user.address)
        .bind(user.email_verified)
        .bind(now_micros())
        .bind(user.id)
        .fetch_one(&mut *tx)
        .await?;
        let mut record = user_from_row(&row)?;
        let roles = normalise_roles(user.extra_roles.clone());
        insert_roles(&mut tx, record.id, &roles).await?;
        enqueue_event(
            &mut tx,
            "user.created",
            record.id,
            serde_json::json!({
                "user_id": record.id,
                "roles": roles,
                "email_verified": record.email_verified,
            }),
        )
        .await?;
        if let Some(code) = &user.verification {
            super::verification::upsert_code(&mut tx, record.id, code, Utc::now()).await?;
        }
        tx.commit().await?;
        record.roles = roles;
        Ok(record)
    }

    async fn user_by_email_index(
        &self,
        email_index: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(&live_user_by("email_index"))
            .bind(email_index)
            .fetch_optional(self.reads())
            .await?;
        self.with_roles(row).await
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(&live_user_by("id"))
            .bind(id)
            .fetch_optional(self.reads())
            .await?;
        self.with_roles(row).await
    }

    async fn grant_roles(
        &self,
        user_id: i64,
        roles: &[String],
    ) -> Result<Option<Vec<String>>, StoreError> {
        if self.user_by_id(user_id).await?.is_none() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        insert_roles(&mut tx, user_id, roles).await?;
        tx.commit().await?;
        Ok(Some(self.roles_of(user_id).await?))
    }

    async fn update_profile(
        &self,
        user_id: i64,
        change: &ProfileChange,
    ) -> Result<Option<UserRecord>, StoreError> {
        sqlx::query(
            "UPDATE users SET name = COALESCE($2, name), phone = COALESCE($3, phone), \
             address = COALESCE($4, address) WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .bind(&change.name)
        .bind(&change.phone)
        .bind(&change.address)
        .execute(self.writes())
        .await?;
        self.user_by_id(user_id).await
    }

    async fn set_password_hash(
        &self,
        user_id: i64,
        password_hash: &str,
        tokens_valid_after: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = $2, tokens_valid_after = $3 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .bind(valid_after_time(tokens_valid_after))
            .execute(self.writes())
            .await?;
        Ok(())
    }

    async fn delete_user(
        &self,
        user_id: i64,
        shredded: &str,
        freed_index: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // Locks the user's row first, as the session statements do (`sessions::lock_sessions_of`):
        // a refresh in flight has stored its successor before the revocation below reads.
        let deleted = sqlx::query(
            "UPDATE users SET email = $2, name = $2, phone = NULL, address = NULL, \
             email_index = $3, deleted_at = $4 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .bind(shredded)
        .bind(freed_index)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(token_time(Utc::now()))
        .execute(&mut *tx)
        .await?;
        for table in ["cart_items", "wishlist_items"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        if deleted.rows_affected() > 0 {
            enqueue_event(
                &mut tx,
                "user.deleted",
                user_id,
                serde_json::json!({ "user_id": user_id }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn deleted_user_ids(&self) -> Result<Vec<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM users WHERE deleted_at IS NOT NULL")
                .fetch_all(self.reads())
                .await?,
        )
    }

    async fn create_customers(&self, users: &[NewUser]) -> Result<Vec<i64>, StoreError> {
        self.insert_customers(users, now_micros()).await
    }

    async fn sealed_values(
        &self,
        column: SealedColumn,
        skip_prefix: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let (table, name, key) = (column.table(), column.column(), column.key());
        let rows: Vec<(i64, String)> = sqlx::query_as(&format!(
            "SELECT {key}, {name} FROM {table} \
             WHERE {key} > $1 AND {name} IS NOT NULL AND substr({name}, 1, $2) <> $3 AND {live} \
             ORDER BY {key} LIMIT $4",
            live = column.live_rows(),
        ))
        .bind(after)
        .bind(i32::try_from(skip_prefix.len()).unwrap_or(i32::MAX))
        .bind(skip_prefix)
        .bind(i64::from(limit))
        .fetch_all(self.reads())
        .await?;
        Ok(rows)
    }

    async fn replace_sealed(
        &self,
        column: SealedColumn,
        key: i64,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let (table, name, key_column) = (column.table(), column.column(), column.key());
        let done = sqlx::query(&format!(
            "UPDATE {table} SET {name} = $3 WHERE {key_column} = $1 AND {name} = $2"
        ))
        .bind(key)
        .bind(old)
        .bind(new)
        .execute(self.writes())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl SqlStore {
    /// The user's roles, sorted, `customer` among them.
    pub(in super::super) async fn roles_of(&self, user_id: i64) -> Result<Vec<String>, StoreError> {
        let roles: Vec<String> =
            sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
                .bind(user_id)
                .fetch_all(self.reads())
                .await?;
        Ok(normalise_roles(roles))
    }

    async fn with_roles(&self, row: Option<DbRow>) -> Result<Option<UserRecord>, StoreError> {
        let Some(row) = row else { return Ok(None) };
        let mut user = user_from_row(&row)?;
        user.roles = self.roles_of(user.id).await?;
        Ok(Some(user))
    }
}

/// The live user whose column `column` equals the one bound value.
fn live_user_by(column: &str) -> String {
    format!(
        "SELECT id, email, password_hash, name, phone, address, email_verified, created_at \
         FROM users WHERE {column} = $1 AND deleted_at IS NULL"
    )
}
