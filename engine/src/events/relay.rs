//! [`OutboxRelay`]: moves committed outbox rows onto the event bus, at least once.
//!
//! It wakes when the writer commits (and every `poll_interval` for rows other code paths or
//! other nodes wrote), takes every shard no other relay holds in one pass
//! (`EventStore::relay_outbox_shards`: advisory locks, `FOR UPDATE SKIP LOCKED`, publish,
//! mark, commit), and goes again at once while the batch was full. Between passes that were
//! not full it waits at least `min_interval`, so that under a stream of commits their events
//! go out together. When the bus or the store fails, rows stay unpublished and it retries
//! with a growing delay: the outbox grows and drains when the bus is back. It also prunes old
//! published rows and inbox rows.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use hurry_persistence::{EventSink, OutboxEvent, SinkError, Store};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::bus::EventBus;

/// Setting under which the relay keeps [`EventBus::acked_through`] of an in-process bus.
pub const ACKED_THROUGH_KEY: &str = "events.local_acked_through";

/// How often the in-process bus's acknowledged point is stored: events acknowledged since
/// are published again after a crash (their consumers' inboxes drop them).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// A pass publishes up to `batch × shards` events, oldest first across the shards.
    pub batch: u32,
    /// Shards of the outbox (PostgreSQL); a relay takes all it can, several relays share.
    pub shards: u32,
    /// Longest sleep without a wake-up.
    pub poll_interval: Duration,
    /// Shortest time between two passes that found less than a full batch: commits arriving
    /// meanwhile go out together, in fewer transactions (what SQLite, with one writer at a
    /// time, wants).
    pub min_interval: Duration,
    /// Longest delay between retries after failures.
    pub max_backoff: Duration,
    /// Published outbox rows and inbox rows older than this are deleted.
    pub retention: Duration,
    /// How often to prune.
    pub prune_interval: Duration,
}

/// Publishes the outbox. See the module docs.
pub struct OutboxRelay {
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    wake: Arc<Notify>,
    config: RelayConfig,
    /// The in-process bus's acknowledged point as last stored (`None` for other buses, or
    /// before [`OutboxRelay::recover`]).
    kept_through: tokio::sync::Mutex<Option<i64>>,
}

/// The bus as the store's sink.
struct BusSink(Arc<dyn EventBus>);

#[async_trait]
impl EventSink for BusSink {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<(), SinkError> {
        self.0.publish(events).await?;
        let now = Utc::now();
        for outbox in events {
            let lag = (now - outbox.event.occurred_at)
                .to_std()
                .unwrap_or_default();
            metrics::histogram!("hurry_outbox_lag_seconds").record(lag.as_secs_f64());
        }
        metrics::counter!("hurry_events_published_total").increment(events.len() as u64);
        Ok(())
    }
}

impl OutboxRelay {
    /// A relay of `store`'s outbox to `bus`, woken by `wake`.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn EventBus>,
        wake: Arc<Notify>,
        config: RelayConfig,
    ) -> Self {
        Self {
            store,
            bus,
            wake,
            config,
            kept_through: tokio::sync::Mutex::new(None),
        }
    }

    /// The relay's settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// Runs the relay on a task until the handle is aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// For an in-process bus: makes the rows published after the last acknowledged point due
    /// again (the bus lost them with the previous process). Returns the stored point.
    pub async fn recover(&self) -> Result<Option<i64>, hurry_persistence::StoreError> {
        if self.bus.acked_through().is_none() {
            return Ok(None);
        }
        let stored = self.store.setting_or_init(ACKED_THROUGH_KEY, "0").await?;
        let through = stored.parse::<i64>().unwrap_or(0);
        let again = self.store.unpublish_outbox_after(through).await?;
        if again > 0 {
            tracing::info!(
                events = again,
                after = through,
                "publishing events again after a restart"
            );
        }
        *self.kept_through.lock().await = Some(through);
        Ok(Some(through))
    }

    /// Publishes due events of every shard no other relay holds, up to `batch × shards` in
    /// all (fewer, larger passes drain a backlog faster: each costs a commit and a publish round
    /// trip); returns how many, and whether there may be more (the pass was full).
    pub async fn pass(&self) -> Result<(usize, bool), hurry_persistence::StoreError> {
        let sink = BusSink(self.bus.clone());
        let limit = self.config.batch.saturating_mul(self.config.shards.max(1));
        let run = self
            .store
            .relay_outbox_shards(self.config.shards, limit, &sink)
            .await?;
        Ok((run.published, run.published >= limit as usize))
    }

    async fn run(self) {
        if let Err(err) = self.recover().await {
            tracing::error!(error = %err, "cannot recover the in-process bus; relaying on");
        }
        let mut backoff = Duration::ZERO;
        let mut last_prune = tokio::time::Instant::now();
        let mut last_checkpoint = tokio::time::Instant::now();
        loop {
            let wake = self.wake.notified();
            let more = match self.pass().await {
                Ok((_, more)) => {
                    backoff = Duration::ZERO;
                    more
                }
                Err(err) => {
                    backoff = (backoff * 2)
                        .max(Duration::from_millis(50))
                        .min(self.config.max_backoff);
                    metrics::counter!("hurry_relay_failures_total").increment(1);
                    tracing::warn!(error = %err, retry_in = ?backoff, "outbox relay pass failed");
                    false
                }
            };
            // At most once a second: each is a write (on SQLite, the one writer's time).
            if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                last_checkpoint = tokio::time::Instant::now();
                self.checkpoint().await;
            }
            if last_prune.elapsed() >= self.config.prune_interval {
                last_prune = tokio::time::Instant::now();
                self.prune().await;
            }
            if more {
                continue;
            }
            if !self.config.min_interval.is_zero() {
                tokio::time::sleep(self.config.min_interval).await;
            }
            let pause = if backoff.is_zero() {
                self.config.poll_interval
            } else {
                backoff
            };
            // A failing bus is retried after the backoff even when commits keep waking us.
            if backoff.is_zero() {
                let _ = tokio::time::timeout(pause, wake).await;
            } else {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Stores the in-process bus's acknowledged point when it moved forward (after
    /// [`OutboxRelay::recover`]); returns the stored point.
    pub async fn checkpoint(&self) -> Option<i64> {
        let mut kept = self.kept_through.lock().await;
        let (Some(now), Some(before)) = (self.bus.acked_through(), *kept) else {
            return *kept;
        };
        if now > before {
            match self
                .store
                .put_setting(ACKED_THROUGH_KEY, &now.to_string())
                .await
            {
                Ok(()) => *kept = Some(now),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot store the bus's acknowledged point");
                }
            }
        }
        *kept
    }

    async fn prune(&self) {
        let kept_through = *self.kept_through.lock().await;
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::MAX);
        match self.store.prune_events(cutoff, kept_through, cutoff).await {
            Ok(pruned) if pruned.outbox + pruned.inbox > 0 => {
                tracing::info!(
                    outbox = pruned.outbox,
                    inbox = pruned.inbox,
                    "pruned old events"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "pruning events failed"),
        }
    }
}
