//! What accounts need of SQLite beyond the shared queries: a loop where PostgreSQL has arrays.

use super::*;

/// Gives `user_id` the `roles` it lacks.
pub(super) async fn insert_roles(
    conn: &mut sqlx::SqliteConnection,
    user_id: i64,
    roles: &[String],
) -> Result<(), StoreError> {
    for role in roles {
        sqlx::query(
            "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(role)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl SqliteStore {
    /// Customers with their roles and `user.created` events, in one transaction.
    pub(super) async fn insert_customers(
        &self,
        users: &[NewUser],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(users.len());
        for user in users {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO users (id, email, email_index, password_hash, name, email_verified, created_at) \
                 VALUES ($7, $1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&user.email)
            .bind(&user.email_index)
            .bind(&user.password_hash)
            .bind(&user.name)
            .bind(user.email_verified)
            .bind(now)
            .bind(user.id)
            .fetch_one(&mut *tx)
            .await?;
            insert_roles(&mut tx, id, &["customer".to_owned()]).await?;
            let payload = serde_json::json!({
                "user_id": id, "roles": ["customer"], "email_verified": user.email_verified,
            });
            enqueue_event(&mut tx, "user.created", id, payload).await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }
}
