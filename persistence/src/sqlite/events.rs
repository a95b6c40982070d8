//! The outbox relay, inboxes, dead letters and the ledger on SQLite.

use super::*;
use crate::event_store::EventSink;

impl SqliteStore {
    /// [`EventStore::relay_outbox`](crate::EventStore::relay_outbox).
    pub(super) async fn relay_one(
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
            "SELECT id, event_id, event_type, version, aggregate_id, occurred_at, payload, target \
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
        .bind(now_micros())
        .bind(first)
        .bind(last)
        .execute(&self.writer)
        .await?;
        Ok(RelayRun {
            published: events.len(),
            busy: false,
        })
    }

    /// Every shard: here only shard 0 has events (one node, one relay).
    pub(super) async fn relay_all(
        &self,
        count: u32,
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError> {
        let shard = RelayShard {
            index: 0,
            count: count.max(1),
        };
        self.relay_one(shard, limit, sink).await
    }

    /// [`EventStore::apply_effects`](crate::EventStore::apply_effects) in two statements.
    pub(super) async fn apply(
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
        let now = now_micros();
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
}
