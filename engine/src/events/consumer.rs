//! Consumers and the loop that feeds them.
//!
//! A [`Consumer`] has its effects through the store's inbox ([`EventStore::apply_effects`]), so
//! a message delivered twice (a relay that died before marking, a consumer that died before
//! acknowledging) has one effect. The loop reads batches for the consumer's group, tries the
//! whole batch, and on failure each event alone, up to `max_deliveries` times with a growing
//! delay; an event that still fails becomes a dead letter (table, with its error) and is
//! acknowledged, so one poison event does not stop the rest. Messages another instance took
//! and never acknowledged are claimed after `claim_idle`.
//!
//! [`EventStore::apply_effects`]: hurry_persistence::EventStore::apply_effects

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hurry_persistence::{Event, NewDeadLetter, Store};
use tokio::task::JoinHandle;

use super::bus::{Delivery, EventBus};

/// Why a consumer could not handle events.
pub type ConsumerError = Box<dyn std::error::Error + Send + Sync>;

/// Something that reacts to events, exactly once per event.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The consumer group (and inbox) name.
    fn group(&self) -> &'static str;

    /// Topics it reads.
    fn topics(&self) -> &'static [&'static str];

    /// Has the effects of `events` (in order), skipping those its inbox already holds; all or
    /// none when they are store effects.
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError>;
}

/// Consumer loop settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Most messages per read.
    pub batch: usize,
    /// How long a read waits for messages.
    pub read_wait: Duration,
    /// Attempts per event before it becomes a dead letter.
    pub max_deliveries: u32,
    /// Delay before the second attempt; doubles after each.
    pub retry_base: Duration,
    /// A message unacknowledged this long is taken over from its consumer.
    pub claim_idle: Duration,
}

/// Runs `consumer` as instance `instance` of its group until the handle is aborted.
pub fn spawn_consumer(
    consumer: Arc<dyn Consumer>,
    instance: String,
    bus: Arc<dyn EventBus>,
    store: Arc<dyn Store>,
    config: ConsumerConfig,
) -> JoinHandle<()> {
    let runner = Runner {
        consumer,
        instance,
        bus,
        store,
        config,
    };
    tokio::spawn(runner.run())
}

struct Runner {
    consumer: Arc<dyn Consumer>,
    instance: String,
    bus: Arc<dyn EventBus>,
    store: Arc<dyn Store>,
    config: ConsumerConfig,
}

impl Runner {
    async fn run(self) {
        let group = self.consumer.group();
        let topics = self.consumer.topics();
        let mut backoff = Duration::ZERO;
        let mut joined = false;
        let mut last_claim = tokio::time::Instant::now();
        loop {
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
            if !joined {
                if let Err(err) = self.bus.join(group, topics).await {
                    backoff = grow(backoff);
                    tracing::warn!(group, error = %err, "cannot join the event bus; retrying");
                    continue;
                }
                joined = true;
            }
            let claim_due = last_claim.elapsed() >= self.config.claim_idle;
            let read = if claim_due {
                last_claim = tokio::time::Instant::now();
                self.bus
                    .claim_stale(
                        group,
                        &self.instance,
                        topics,
                        self.config.claim_idle,
                        self.config.batch,
                    )
                    .await
            } else {
                self.bus
                    .read(
                        group,
                        &self.instance,
                        topics,
                        self.config.batch,
                        self.config.read_wait,
                    )
                    .await
            };
            match read {
                Ok(deliveries) => {
                    backoff = Duration::ZERO;
                    if !deliveries.is_empty() {
                        self.process(deliveries).await;
                    }
                }
                Err(err) => {
                    backoff = grow(backoff);
                    tracing::warn!(group, error = %err, "reading the event bus failed");
                }
            }
        }
    }

    /// Handles a batch; unacknowledged messages (the store was down) are claimed again later.
    async fn process(&self, deliveries: Vec<Delivery>) {
        let group = self.consumer.group();
        let events: Vec<Event> = deliveries.iter().map(|d| d.event.clone()).collect();
        if self.attempt(events).await.is_ok() {
            self.ack(&deliveries).await;
            return;
        }
        for delivery in deliveries {
            let mut delay = self.config.retry_base;
            let mut attempts = 1;
            let outcome = loop {
                match self.attempt(vec![delivery.event.clone()]).await {
                    Ok(()) => break Ok(()),
                    Err(err) if attempts >= self.config.max_deliveries => break Err(err),
                    Err(err) => {
                        tracing::warn!(group, event = %delivery.event.event_id, attempts, error = %err, "event failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                        attempts += 1;
                    }
                }
            };
            match outcome {
                Ok(()) => self.ack(std::slice::from_ref(&delivery)).await,
                Err(error) => self.bury(delivery, error, attempts).await,
            }
        }
    }

    /// Runs the consumer on its own task, so a panic is a failed attempt, not a dead loop.
    async fn attempt(&self, events: Vec<Event>) -> Result<(), String> {
        let consumer = self.consumer.clone();
        let handled = tokio::spawn(async move { consumer.handle(&events).await }).await;
        match handled {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(join) => Err(format!("consumer panicked: {join}")),
        }
    }

    async fn bury(&self, delivery: Delivery, error: String, deliveries: u32) {
        let group = self.consumer.group();
        let letter = NewDeadLetter {
            consumer: group.to_owned(),
            event: delivery.event.clone(),
            error: error.clone(),
            deliveries,
        };
        match self.store.add_dead_letter(&letter).await {
            Ok(id) => {
                if let Err(err) = self.bus.publish_dead(group, &delivery.event, &error).await {
                    // The table has it; the stream copy is for outside watchers.
                    tracing::warn!(group, error = %err, "cannot copy a dead letter to the bus");
                }
                metrics::counter!("hurry_events_dead_lettered_total", "consumer" => group)
                    .increment(1);
                tracing::error!(group, dead_letter = id, event = %delivery.event.event_id, %error, "event moved to dead letters");
                self.ack(std::slice::from_ref(&delivery)).await;
            }
            Err(err) => {
                tracing::error!(group, error = %err, "cannot store a dead letter; it stays pending");
            }
        }
    }

    async fn ack(&self, deliveries: &[Delivery]) {
        let group = self.consumer.group();
        match self.bus.ack(group, deliveries).await {
            Ok(()) => metrics::counter!("hurry_events_consumed_total", "consumer" => group)
                .increment(deliveries.len() as u64),
            // Unacknowledged messages come back after `claim_idle`; the inbox drops repeats.
            Err(err) => tracing::warn!(group, error = %err, "acknowledging failed"),
        }
    }
}

fn grow(backoff: Duration) -> Duration {
    (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(5))
}
