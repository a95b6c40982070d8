//! The outbox relay, inboxes, dead letters and the ledger on PostgreSQL.

use super::*;
use crate::event_store::{EventSink, EventStore};

/// First key of the relay's advisory locks (`pg_try_advisory_xact_lock(RELAY_LOCK, shard)`).
const RELAY_LOCK: i32 = 0x6875_7272; // "hurr"

const DEAD_LETTER_COLUMNS: &str = "id, consumer, event_id, event_type, version, aggregate_id, \
     occurred_at, CAST(payload AS TEXT) AS payload, error, deliveries, failed_at, replayed_at";

#[async_trait]
impl EventStore for PgStore {
    async fn relay_outbox(
        &self,
        shard: RelayShard,
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError> {
        let index = i32::try_from(shard.index)
            .map_err(|_| StoreError::Invalid("shard index out of range".into()))?;
        self.relay_held(shard.count, &[index], limit, sink).await
    }

    async fn relay_outbox_shards(
        &self,
        count: u32,
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError> {
        let count = count.max(1);
        let last = i32::try_from(count - 1)
            .map_err(|_| StoreError::Invalid("shard count out of range".into()))?;
        let all: Vec<i32> = (0..=last).collect();
        self.relay_held(count, &all, limit, sink).await
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
            "UPDATE outbox SET published_at = NULL WHERE id > $1 AND published_at IS NOT NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn apply_effects(
        &self,
        consumer: &str,
        effects: &[(uuid::Uuid, Effect)],
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut applied = 0;
        for (event_id, effect) in effects {
            let fresh = sqlx::query(
                "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, now()) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(consumer)
            .bind(event_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !fresh {
                continue;
            }
            applied += 1;
            match effect {
                Effect::Record => {}
                Effect::Ledger(entries) => {
                    for entry in entries {
                        let written = sqlx::query(
                            "INSERT INTO ledger_entries \
                             (event_id, order_id, item_id, seller_id, kind, quantity, amount, created_at) \
                             SELECT $1, $2, $3, seller_id, $4, $5, $6, now() FROM items WHERE id = $3",
                        )
                        .bind(event_id)
                        .bind(entry.order_id)
                        .bind(entry.item_id)
                        .bind(entry.kind.as_str())
                        .bind(entry.quantity)
                        .bind(entry.amount)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if written == 0 {
                            return Err(StoreError::Invalid(format!(
                                "ledger entry for unknown item {}",
                                entry.item_id
                            )));
                        }
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(applied)
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
        .bind(event_id)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn add_dead_letter(&self, letter: &NewDeadLetter) -> Result<i64, StoreError> {
        let event = &letter.event;
        Ok(sqlx::query_scalar(
            "INSERT INTO dead_letters (consumer, event_id, event_type, version, aggregate_id, \
             occurred_at, payload, error, deliveries, failed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS JSON), $8, $9, now()) RETURNING id",
        )
        .bind(&letter.consumer)
        .bind(event.event_id)
        .bind(&event.event_type)
        .bind(event.version)
        .bind(event.aggregate_id)
        .bind(event.occurred_at)
        .bind(event.payload.to_string())
        .bind(&letter.error)
        .bind(i32::try_from(letter.deliveries).unwrap_or(i32::MAX))
        .fetch_one(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let copied = sqlx::query(
            "INSERT INTO outbox (event_id, event_type, version, aggregate_id, occurred_at, payload) \
             SELECT event_id, event_type, version, aggregate_id, occurred_at, payload \
             FROM dead_letters WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if copied == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn ledger_of_order(&self, order_id: i64) -> Result<Vec<LedgerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_id, order_id, item_id, seller_id, kind, quantity, amount \
             FROM ledger_entries WHERE order_id = $1 ORDER BY id",
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
            sqlx::query("DELETE FROM outbox WHERE published_at < $1 AND id <= COALESCE($2, id)")
                .bind(published_before)
                .bind(max_outbox_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        let inbox = sqlx::query("DELETE FROM inbox WHERE processed_at < $1")
            .bind(processed_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(Pruned { outbox, inbox })
    }
}

impl PgStore {
    /// One relay transaction over the shards of `wanted` (of `count`) that no other relay
    /// holds: their advisory locks in one statement, then their oldest unpublished rows
    /// (`FOR UPDATE SKIP LOCKED`), publish, mark, commit. `busy` when every one was held.
    async fn relay_held(
        &self,
        count: u32,
        wanted: &[i32],
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError> {
        let mut tx = self.pool.begin().await?;
        let held: Option<Vec<i32>> = sqlx::query_scalar(
            "SELECT array_agg(s) FROM unnest($2::int4[]) AS s \
             WHERE pg_try_advisory_xact_lock($1, s)",
        )
        .bind(RELAY_LOCK)
        .bind(wanted)
        .fetch_one(&mut *tx)
        .await?;
        let Some(held) = held.filter(|held| !held.is_empty()) else {
            return Ok(RelayRun {
                published: 0,
                busy: true,
            });
        };
        let rows = sqlx::query(
            "SELECT id, event_id, event_type, version, aggregate_id, occurred_at, \
             CAST(payload AS TEXT) AS payload FROM outbox \
             WHERE published_at IS NULL AND mod(aggregate_id, $1)::int4 = ANY($2) \
             ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(count.max(1)))
        .bind(&held)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let events = rows
            .iter()
            .map(outbox_event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if events.is_empty() {
            tx.commit().await?;
            return Ok(RelayRun::default());
        }
        // The rows stay locked while the sink publishes; an error rolls the transaction back
        // and leaves them for the next pass. Explicitly, and before returning: a dropped
        // transaction is only rolled back when its connection is next used, and until then
        // its row locks make the next pass skip the rows (seen as a flaky conformance test).
        if let Err(err) = sink.publish(&events).await {
            tx.rollback().await?;
            return Err(StoreError::Sink(err));
        }
        let ids: Vec<i64> = events.iter().map(|event| event.id).collect();
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RelayRun {
            published: events.len(),
            busy: false,
        })
    }
}
