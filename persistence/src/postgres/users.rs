//! Accounts and roles on PostgreSQL.

use super::*;
use crate::store::UserStore;

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO users (email, email_index, password_hash, name, phone, address, email_verified, created_at) \
             VALUES ($1, $7, $2, $3, $4, $5, $6, now()) \
             RETURNING id, email, password_hash, name, phone, address, email_verified, created_at",
        )
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.name)
        .bind(&user.phone)
        .bind(&user.address)
        .bind(user.email_verified)
        .bind(&user.email_index)
        .fetch_one(&mut *tx)
        .await?;
        let mut record = user_from_row(&row)?;
        let roles = normalise_roles(user.extra_roles.clone());
        sqlx::query("INSERT INTO user_roles (user_id, role) SELECT $1, UNNEST($2::text[])")
            .bind(record.id)
            .bind(&roles)
            .execute(&mut *tx)
            .await?;
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
        self.user_where("email_index = $1", Arg::Text(email_index))
            .await
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        self.user_where("id = $1", Arg::Int(id)).await
    }

    async fn grant_roles(
        &self,
        user_id: i64,
        roles: &[String],
    ) -> Result<Option<Vec<String>>, StoreError> {
        if self.user_by_id(user_id).await?.is_none() {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO user_roles (user_id, role) SELECT $1, UNNEST($2::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(roles)
        .execute(&self.pool)
        .await?;
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
        .execute(&self.pool)
        .await?;
        self.user_by_id(user_id).await
    }

    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_user(
        &self,
        user_id: i64,
        shredded: &str,
        freed_index: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "UPDATE users SET email = $2, name = $2, phone = NULL, address = NULL, \
             email_index = $3, deleted_at = now() WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id)
        .bind(shredded)
        .bind(freed_index)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
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
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn create_customers(&self, users: &[NewUser]) -> Result<Vec<i64>, StoreError> {
        let column = |field: fn(&NewUser) -> &String| -> Vec<&str> {
            users.iter().map(|user| field(user).as_str()).collect()
        };
        let verified: Vec<bool> = users.iter().map(|user| user.email_verified).collect();
        Ok(sqlx::query_scalar(
            "WITH new_users AS ( \
                 INSERT INTO users (email, email_index, password_hash, name, email_verified, created_at) \
                 SELECT * , now() FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[]) \
                 RETURNING id, email_verified), \
             new_roles AS ( \
                 INSERT INTO user_roles (user_id, role) SELECT id, 'customer' FROM new_users) \
             INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
             SELECT gen_random_uuid(), 'user.created', 1, id, now(), json_build_object( \
                 'user_id', id, 'roles', json_build_array('customer'), 'email_verified', email_verified) \
             FROM new_users RETURNING aggregate_id",
        )
        .bind(column(|user| &user.email))
        .bind(column(|user| &user.email_index))
        .bind(column(|user| &user.password_hash))
        .bind(column(|user| &user.name))
        .bind(&verified)
        .fetch_all(&self.pool)
        .await?)
    }
}
