//! The outbox relay, inboxes, dead letters and the ledger on SQLite.

use super::*;
use crate::event_store::{EventSink, EventStore};

const DEAD_LETTER_COLUMNS: &str = "id, consumer, event_id, event_type, version, aggregate_id, \
     occurred_at, payload, error, deliveries, failed_at, replayed_at";

#[async_trait]
impl EventStore for SqliteStore {
    async fn relay_outbox(
        &self,
        shard: RelayShard,
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError> {
        // One node, one relay, one shard. No transaction is held while the sink publishes
        // (that would hold SQLite's only write lock); a relay that dies between publish and
        // mark leaves the rows unpublished, which is the at-least-once contract anyway. Rows
        // commit in id order (one writer at a time), so publishing by id keeps every order.
        if shard.index != 0 {
            return Ok(RelayRun::default());
        }
        let rows = sqlx::query(
            "SELECT id, event_id, event_type, version, aggregate_id, occurred_at, payload \
             FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let events = rows
            .iter()
            .map(outbox_event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if events.is_empty() {
            return Ok(RelayRun::default());
        }
        sink.publish(&events).await.map_err(StoreError::Sink)?;
        let first = events.first().map_or(0, |event| event.id);
        let last = events.last().map_or(0, |event| event.id);
        sqlx::query(
            "UPDATE outbox SET published_at = ? \
             WHERE id BETWEEN ? AND ? AND published_at IS NULL",
        )
        .bind(Utc::now().trunc_subsecs(6))
        .bind(first)
        .bind(last)
        .execute(&self.writer)
        .await?;
        Ok(RelayRun {
            published: events.len(),
            busy: false,
        })
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn unpublish_outbox_after(&self, id: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET published_at = NULL WHERE id > ? AND published_at IS NOT NULL",
        )
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn apply_effects(
        &self,
        consumer: &str,
        effects: &[(uuid::Uuid, Effect)],
    ) -> Result<usize, StoreError> {
        // Two statements for the whole batch (json_each), so the one writer connection is held
        // briefly: the inbox rows (RETURNING the fresh ones), then every ledger entry of the
        // fresh events.
        let mut first_seen = std::collections::HashSet::new();
        let effects: Vec<&(uuid::Uuid, Effect)> = effects
            .iter()
            .filter(|(event_id, _)| first_seen.insert(*event_id))
            .collect();
        let ids: Vec<String> = effects.iter().map(|(id, _)| id.to_string()).collect();
        let ids_json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned());
        let now = Utc::now().trunc_subsecs(6);
        let mut tx = self.writer.begin().await?;
        let fresh: std::collections::HashSet<String> = sqlx::query_scalar(
            "INSERT INTO inbox (consumer, event_id, processed_at) \
             SELECT ?1, value, ?2 FROM json_each(?3) WHERE true \
             ON CONFLICT DO NOTHING RETURNING event_id",
        )
        .bind(consumer)
        .bind(now)
        .bind(&ids_json)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let entries: Vec<serde_json::Value> = effects
            .iter()
            .zip(&ids)
            .filter(|(_, id)| fresh.contains(*id))
            .flat_map(|((_, effect), id)| match effect {
                Effect::Record => Vec::new(),
                Effect::Ledger(entries) => entries
                    .iter()
                    .map(|entry| {
                        serde_json::json!({
                            "e": id, "o": entry.order_id, "i": entry.item_id,
                            "k": entry.kind.as_str(), "q": entry.quantity, "a": entry.amount,
                        })
                    })
                    .collect(),
            })
            .collect();
        if !entries.is_empty() {
            let written = sqlx::query(
                "INSERT INTO ledger_entries \
                 (event_id, order_id, item_id, seller_id, kind, quantity, amount, created_at) \
                 SELECT json_extract(j.value, '$.e'), json_extract(j.value, '$.o'), it.id, \
                        it.seller_id, json_extract(j.value, '$.k'), json_extract(j.value, '$.q'), \
                        json_extract(j.value, '$.a'), ?2 \
                 FROM json_each(?1) j JOIN items it ON it.id = json_extract(j.value, '$.i')",
            )
            .bind(serde_json::Value::Array(entries.clone()).to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if written != entries.len() as u64 {
                let wanted: Vec<i64> = entries.iter().filter_map(|e| e["i"].as_i64()).collect();
                let wanted_json = serde_json::to_string(&wanted).unwrap_or_default();
                let missing: Option<i64> = sqlx::query_scalar(
                    "SELECT value FROM json_each(?) \
                     WHERE value NOT IN (SELECT id FROM items) LIMIT 1",
                )
                .bind(wanted_json)
                .fetch_optional(&mut *tx)
                .await?;
                return Err(StoreError::Invalid(format!(
                    "ledger entry for unknown item {}",
                    missing.unwrap_or_default()
                )));
            }
        }
        tx.commit().await?;
        Ok(fresh.len())
    }

    async fn event_processed(
        &self,
        consumer: &str,
        event_id: uuid::Uuid,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer = ? AND event_id = ?)",
        )
        .bind(consumer)
        .bind(event_id.to_string())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn add_dead_letter(&self, letter: &NewDeadLetter) -> Result<i64, StoreError> {
        let event = &letter.event;
        Ok(sqlx::query_scalar(
            "INSERT INTO dead_letters (consumer, event_id, event_type, version, aggregate_id, \
             occurred_at, payload, error, deliveries, failed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&letter.consumer)
        .bind(event.event_id.to_string())
        .bind(&event.event_type)
        .bind(event.version)
        .bind(event.aggregate_id)
        .bind(event.occurred_at)
        .bind(event.payload.get())
        .bind(&letter.error)
        .bind(i32::try_from(letter.deliveries).unwrap_or(i32::MAX))
        .bind(Utc::now().trunc_subsecs(6))
        .fetch_one(&self.writer)
        .await?)
    }

    async fn dead_letters(
        &self,
        page: u32,
        size: u32,
    ) -> Result<Page<DeadLetterRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters ORDER BY id DESC LIMIT ? OFFSET ?"
        ))
        .bind(i64::from(size))
        .bind(i64::from(page) * i64::from(size))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters")
            .fetch_one(&self.pool)
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
        let mut tx = self.writer.begin().await?;
        let copied = sqlx::query(
            "INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
             SELECT event_id, event_type, version, aggregate_id, occurred_at, payload \
             FROM dead_letters WHERE id = ?",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if copied == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE dead_letters SET replayed_at = ? WHERE id = ?")
            .bind(Utc::now().trunc_subsecs(6))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn ledger_of_order(&self, order_id: i64) -> Result<Vec<LedgerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_id, order_id, item_id, seller_id, kind, quantity, amount \
             FROM ledger_entries WHERE order_id = ? ORDER BY id",
        )
        .bind(order_id)
        .fetch_all(&self.pool)
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
            sqlx::query("DELETE FROM outbox WHERE published_at < ? AND id <= COALESCE(?, id)")
                .bind(published_before.trunc_subsecs(6))
                .bind(max_outbox_id)
                .execute(&self.writer)
                .await?
                .rows_affected();
        let inbox = sqlx::query("DELETE FROM inbox WHERE processed_at < ?")
            .bind(processed_before.trunc_subsecs(6))
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(Pruned { outbox, inbox })
    }
}
