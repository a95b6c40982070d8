//! What accounts need of PostgreSQL beyond the shared queries: arrays.

use super::*;

/// Gives `user_id` the `roles` it lacks, in one statement.
pub(super) async fn insert_roles(
    conn: &mut sqlx::PgConnection,
    user_id: i64,
    roles: &[String],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO user_roles (user_id, role) SELECT $1, UNNEST($2::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(roles)
    .execute(conn)
    .await?;
    Ok(())
}

impl PgStore {
    /// Customers with their roles and `user.created` events, in one statement.
    pub(super) async fn insert_customers(
        &self,
        users: &[NewUser],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let column = |field: fn(&NewUser) -> &String| -> Vec<&str> {
            users.iter().map(|user| field(user).as_str()).collect()
        };
        let verified: Vec<bool> = users.iter().map(|user| user.email_verified).collect();
        let ids: Vec<i64> = sqlx::query_scalar(
            "WITH new_users AS ( \
                 INSERT INTO users (id, email, email_index, password_hash, name, email_verified, created_at) \
                 SELECT *, $6 FROM UNNEST($7::int8[], $1::text[], $2::text[], $3::text[], $4::text[], $5::bool[]) \
                 RETURNING id, email_verified), \
             new_roles AS ( \
                 INSERT INTO user_roles (user_id, role) SELECT id, 'customer' FROM new_users) \
             INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
             SELECT gen_random_uuid(), 'user.created', 1, id, $6, json_build_object( \
                 'user_id', id, 'roles', json_build_array('customer'), 'email_verified', email_verified) \
             FROM new_users RETURNING aggregate_id",
        )
        .bind(column(|user| &user.email))
        .bind(column(|user| &user.email_index))
        .bind(column(|user| &user.password_hash))
        .bind(column(|user| &user.name))
        .bind(&verified)
        .bind(now)
        .bind(users.iter().map(|user| user.id).collect::<Vec<i64>>())
        .fetch_all(&self.pool)
        .await?;
        if !ids.is_empty() {
            self.outbox_rows_committed();
        }
        Ok(ids)
    }
}
