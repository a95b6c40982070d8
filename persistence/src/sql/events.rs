//! The outbox, inboxes, dead letters and the ledger; the relay and the consumers' batch writes
//! are each backend's own (`relay_one`, `relay_all`, `apply`).

use super::super::*;
use crate::event_store::{EventSink, EventStore};

const DEAD_LETTER_COLUMNS: &str = "id, consumer, event_id, event_type, version, aggregate_id, \
     occurred_at, CAST(payload AS TEXT) AS payload, error, deliveries, failed_at, replayed_at";

#[async_trait]
impl EventStore for SqlStore {
    fn outbox_written(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox_written.clone()
    }

    async fn relay_outbox(
        &self,
        shard: RelayShard,
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError> {
        self.relay_one(shard, limit, sink).await
    }

    async fn relay_outbox_shards(
        &self,
        count: u32,
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError> {
        self.relay_all(count, limit, sink).await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(self.reads())
                .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn unpublish_outbox_after(&self, id: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET published_at = NULL WHERE id > $1 AND published_at IS NOT NULL",
        )
        .bind(id)
        .execute(self.writes())
        .await?;
        if done.rows_affected() > 0 {
            self.outbox_rows_committed();
        }
        Ok(done.rows_affected())
    }

    async fn apply_effects(
        &self,
        consumer: &str,
        effects: &[(uuid::Uuid, Effect)],
    ) -> Result<usize, StoreError> {
        self.apply(consumer, effects).await
    }

    async fn event_processed(
        &self,
        consumer: &str,
        event_id: uuid::Uuid,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2)",
        )
        .bind(consumer)
        .bind(uuid_param(event_id))
        .fetch_one(self.reads())
        .await?)
    }

    async fn add_dead_letter(&self, letter: &NewDeadLetter) -> Result<i64, StoreError> {
        let event = &letter.event;
        Ok(sqlx::query_scalar(&format!(
            "INSERT INTO dead_letters (consumer, event_id, event_type, version, aggregate_id, \
             occurred_at, payload, error, deliveries, failed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS {JSON_TYPE}), $8, $9, $10) RETURNING id"
        ))
        .bind(&letter.consumer)
        .bind(uuid_param(event.event_id))
        .bind(&event.event_type)
        .bind(event.version)
        .bind(event.aggregate_id)
        .bind(event.occurred_at)
        .bind(event.payload.get())
        .bind(&letter.error)
        .bind(i32::try_from(letter.deliveries).unwrap_or(i32::MAX))
        .bind(now_micros())
        .fetch_one(self.writes())
        .await?)
    }

    async fn dead_letters(
        &self,
        page: u32,
        size: u32,
    ) -> Result<Page<DeadLetterRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters ORDER BY id DESC LIMIT $1 OFFSET $2"
        ))
        .bind(i64::from(size))
        .bind(i64::from(page) * i64::from(size))
        .fetch_all(self.reads())
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
            .fetch_one(self.reads())
            .await?;
        Ok(Page {
            rows: rows
                .iter()
                .map(dead_letter_from_row)
                .collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn replay_dead_letter(&self, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let copied = sqlx::query(
            "INSERT INTO outbox \
                 (event_id, event_type, version, aggregate_id, occurred_at, payload, target) \
             SELECT event_id, event_type, version, aggregate_id, occurred_at, payload, consumer \
             FROM dead_letters WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if copied == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE dead_letters SET replayed_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        tx.wrote_outbox();
        tx.commit().await?;
        Ok(true)
    }

    async fn ledger_of_order(&self, order_id: i64) -> Result<Vec<LedgerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_id, order_id, item_id, seller_id, kind, quantity, amount \
             FROM ledger_entries WHERE order_id = $1 ORDER BY id",
        )
        .bind(order_id)
        .fetch_all(self.reads())
        .await?;
        rows.iter().map(ledger_from_row).collect()
    }

    async fn prune_events(
        &self,
        published_before: DateTime<Utc>,
        max_outbox_id: Option<i64>,
        processed_before: DateTime<Utc>,
    ) -> Result<Pruned, StoreError> {
        let outbox =
            sqlx::query("DELETE FROM outbox WHERE published_at < $1 AND id <= COALESCE($2, id)")
                .bind(published_before.trunc_subsecs(6))
                .bind(max_outbox_id)
                .execute(self.writes())
                .await?
                .rows_affected();
        // An event with a dead letter may be replayed any time later: the inbox rows of the
        // consumers that had it must outlive the retention, or a replay repeats their effect.
        let inbox = sqlx::query(
            "DELETE FROM inbox WHERE processed_at < $1 \
             AND event_id NOT IN (SELECT event_id FROM dead_letters)",
        )
        .bind(processed_before.trunc_subsecs(6))
        .execute(self.writes())
        .await?
        .rows_affected();
        Ok(Pruned { outbox, inbox })
    }
}
