//! Starting the event backbone for the server: the bus (Redis Streams in cluster mode, in
//! process otherwise), the outbox relay and the consumers (the ledger, and those the caller
//! adds: the mailer).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hurry_engine::events::{
    spawn_consumer, Consumer, ConsumerConfig, EventBus, LedgerConsumer, LocalBus, OutboxRelay,
    RedisBus, RelayConfig,
};
use hurry_engine::Engine;
use hurry_persistence::{Backend, Store};
use tokio::task::JoinHandle;

use crate::settings::Settings;

/// The running relay and consumers; aborted when dropped.
pub struct EventSystem {
    pub bus: Arc<dyn EventBus>,
    /// This process's consumer name in every group.
    pub instance: String,
    /// The settings the consumers and the relay run with (tests start more of them).
    pub consumer_config: ConsumerConfig,
    pub relay_config: RelayConfig,
    tasks: Vec<JoinHandle<()>>,
}

impl EventSystem {
    /// Picks the bus, then starts the consumers and the relay.
    pub async fn start(
        settings: &Settings,
        store: &Arc<dyn Store>,
        engine: &Engine,
        more_consumers: Vec<Arc<dyn Consumer>>,
    ) -> anyhow::Result<Self> {
        let events = &settings.events;
        let bus: Arc<dyn EventBus> = if settings.redis.url.is_empty() {
            Arc::new(LocalBus::new())
        } else {
            Arc::new(
                RedisBus::new(
                    &settings.redis.url,
                    &settings.redis.key_prefix,
                    events.stream_max_len,
                )
                .context("cannot set up the Redis event bus")?,
            )
        };
        let instance = format!("node-{}", uuid::Uuid::new_v4().simple());
        let consumer_config = ConsumerConfig {
            batch: events.consumer_batch.max(1),
            read_wait: Duration::from_millis(events.read_wait_ms),
            max_deliveries: events.max_deliveries.max(1),
            retry_base: Duration::from_millis(events.retry_base_ms),
            claim_idle: Duration::from_millis(events.claim_idle_ms),
        };
        let mut tasks = Vec::new();
        if events.consumers_enabled {
            let mut consumers: Vec<Arc<dyn Consumer>> =
                vec![Arc::new(LedgerConsumer::new(store.clone()))];
            consumers.extend(more_consumers);
            for consumer in consumers {
                // Join before the relay starts: the in-process bus keeps nothing for a group
                // that does not exist yet. (Redis keeps the stream; a failure here is retried
                // by the consumer loop.)
                if let Err(err) = bus.join(consumer.group(), consumer.topics()).await {
                    tracing::warn!(error = %err, "cannot join the event bus yet");
                }
                tasks.push(spawn_consumer(
                    consumer,
                    instance.clone(),
                    bus.clone(),
                    store.clone(),
                    consumer_config.clone(),
                ));
            }
        }
        let relay = OutboxRelay::new(
            store.clone(),
            bus.clone(),
            engine.outbox_written(),
            RelayConfig {
                batch: events.relay_batch.max(1),
                // SQLite has one relay and one shard; see EventStore::relay_outbox.
                shards: match store.backend() {
                    Backend::Postgres => events.relay_shards.max(1),
                    Backend::Sqlite => 1,
                },
                poll_interval: Duration::from_millis(events.relay_poll_ms.max(1)),
                min_interval: Duration::from_millis(events.relay_min_interval_ms),
                max_backoff: Duration::from_millis(events.relay_max_backoff_ms.max(1)),
                retention: Duration::from_secs(events.retention_hours * 3600),
                prune_interval: Duration::from_secs(events.prune_interval_secs.max(1)),
            },
        );
        let relay_config = relay.config().clone();
        if events.relay_enabled {
            tasks.push(relay.spawn());
        }
        Ok(Self {
            bus,
            instance,
            consumer_config,
            relay_config,
            tasks,
        })
    }

    /// Stops the relay and the consumers (what they had not finished is redone later).
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for EventSystem {
    fn drop(&mut self) {
        self.stop();
    }
}
