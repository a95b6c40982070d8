//! Starting the event backbone for the server: the bus (Redis Streams in cluster mode, in
//! process otherwise), the outbox relay and the consumers (the ledger, and those the caller
//! adds: the mailer).

use std::sync::Arc;

use anyhow::Context;
use hurry_engine::events::{
    spawn_consumer, Consumer, ConsumerConfig, EventBus, LedgerConsumer, LocalBus, OutboxRelay,
    RedisBus, RelayConfig,
};
use hurry_persistence::Store;
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
        let consumer_config = events.consumer_config();
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
            store.outbox_written(),
            events.relay_config(store.backend()),
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
