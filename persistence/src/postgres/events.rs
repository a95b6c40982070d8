//! The outbox relay, inboxes, dead letters and the ledger on PostgreSQL.

use super::*;
use crate::event_store::EventSink;

/// First key of the relay's advisory locks (`pg_try_advisory_xact_lock(RELAY_LOCK, shard)`).
const RELAY_LOCK: i32 = 0x6875_7272; // "hurr"

impl PgStore {
    /// [`EventStore::relay_outbox`](crate::EventStore::relay_outbox): the shard's advisory
    /// lock, then its rows.
    pub(super) async fn relay_one(
        &self,
        shard: RelayShard,
        limit: u32,
        sink: &dyn EventSink,
    ) -> Result<RelayRun, StoreError> {
        let index = i32::try_from(shard.index)
            .map_err(|_| StoreError::Invalid("shard index out of range".into()))?;
        self.relay_held(shard.count, &[index], limit, sink).await
    }

    /// [`EventStore::relay_outbox_shards`](crate::EventStore::relay_outbox_shards): every free
    /// shard in one transaction.
    pub(super) async fn relay_all(
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

    /// [`EventStore::apply_effects`](crate::EventStore::apply_effects) in one statement.
    pub(super) async fn apply(
        &self,
        consumer: &str,
        effects: &[(uuid::Uuid, Effect)],
    ) -> Result<usize, StoreError> {
        // One statement for the whole batch: the inbox rows (those already there return
        // nothing), then the ledger entries of the fresh events only, with each item's seller.
        // In a transaction, so that an entry of an unknown item undoes the batch. An event
        // twice in the batch has its effect once.
        let mut first_seen = std::collections::HashSet::new();
        let effects: Vec<&(uuid::Uuid, Effect)> = effects
            .iter()
            .filter(|(event_id, _)| first_seen.insert(*event_id))
            .collect();
        let ledger = LedgerColumns::of(&effects);
        let event_ids: Vec<uuid::Uuid> = effects.iter().map(|(event_id, _)| *event_id).collect();
        let mut tx = self.pool.begin().await?;
        let (fresh, written): (Option<Vec<uuid::Uuid>>, i64) = sqlx::query_as(
            "WITH fresh AS ( \
                 INSERT INTO inbox (consumer, event_id, processed_at) \
                 SELECT $1, e, now() FROM UNNEST($2::uuid[]) AS e \
                 ON CONFLICT DO NOTHING RETURNING event_id), \
             written AS ( \
                 INSERT INTO ledger_entries \
                     (event_id, order_id, item_id, seller_id, kind, quantity, amount, created_at) \
                 SELECT t.e, t.o, it.id, it.seller_id, t.k, t.q, t.a, now() \
                 FROM UNNEST($3::uuid[], $4::int8[], $5::int8[], $6::text[], $7::int8[], $8::int8[]) \
                     AS t(e, o, i, k, q, a) \
                 JOIN items it ON it.id = t.i \
                 WHERE t.e IN (SELECT event_id FROM fresh) RETURNING 1) \
             SELECT (SELECT array_agg(event_id) FROM fresh), (SELECT COUNT(*) FROM written)",
        )
        .bind(consumer)
        .bind(&event_ids)
        .bind(&ledger.event_ids)
        .bind(&ledger.order_ids)
        .bind(&ledger.item_ids)
        .bind(&ledger.kinds)
        .bind(&ledger.quantities)
        .bind(&ledger.amounts)
        .fetch_one(&mut *tx)
        .await?;
        let fresh: std::collections::HashSet<uuid::Uuid> =
            fresh.unwrap_or_default().into_iter().collect();
        let expected = ledger
            .event_ids
            .iter()
            .filter(|event_id| fresh.contains(event_id))
            .count();
        if usize::try_from(written).unwrap_or(usize::MAX) != expected {
            tx.rollback().await?;
            return Err(StoreError::Invalid(
                "a ledger entry names an unknown item".into(),
            ));
        }
        tx.commit().await?;
        Ok(fresh.len())
    }

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
             CAST(payload AS TEXT) AS payload, target FROM outbox \
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

/// The ledger entries of a batch of effects, one array per column, for `UNNEST`.
#[derive(Default)]
struct LedgerColumns {
    event_ids: Vec<uuid::Uuid>,
    order_ids: Vec<i64>,
    item_ids: Vec<i64>,
    kinds: Vec<&'static str>,
    quantities: Vec<i64>,
    amounts: Vec<i64>,
}

impl LedgerColumns {
    fn of(effects: &[&(uuid::Uuid, Effect)]) -> Self {
        let mut columns = Self::default();
        for (event_id, effect) in effects.iter().copied() {
            let Effect::Ledger(entries) = effect else {
                continue;
            };
            for entry in entries {
                columns.event_ids.push(*event_id);
                columns.order_ids.push(entry.order_id);
                columns.item_ids.push(entry.item_id);
                columns.kinds.push(entry.kind.as_str());
                columns.quantities.push(entry.quantity);
                columns.amounts.push(entry.amount);
            }
        }
        columns
    }
}
