//! The loop that feeds a [`Consumer`]: reads batches for its group, has them handled, retries,
//! buries what cannot be handled, and claims what a dead instance left.
//!
//! - A message for another group (a replayed dead letter, [`Delivery::target`]) is
//!   acknowledged unread: the replay is for the consumer that gave up on it only.
//! - A [`ConsumerError::Transient`] failure (the store cannot be reached) is waited out: the
//!   same events again after a delay doubling from `retry_base` up to `retry_max`, for as long
//!   as it takes. No delivery is spent, nothing becomes a dead letter, the order is kept.
//! - A [`ConsumerError::Permanent`] failure of a batch is isolated: each event alone, in
//!   order, so the good ones are applied and acknowledged at once. An event that fails, and
//!   the batch's later events of the same aggregate (they keep their order behind it), are
//!   held; the failed one gets up to `max_deliveries` attempts, a delay doubling from
//!   `retry_base` between them, then becomes a dead letter (table, with its error) and is
//!   acknowledged, and the held events of its aggregate go on.
//!
//! Messages another instance took and never acknowledged are claimed after `claim_idle`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hurry_persistence::{Event, NewDeadLetter, Store};
use tokio::task::JoinHandle;

use super::bus::{Delivery, EventBus};
use super::consumer::{Consumer, ConsumerConfig, ConsumerError};

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

    /// Handles a batch: all at once, or, when it fails permanently, event by event.
    async fn process(&self, deliveries: Vec<Delivery>) {
        let group = self.consumer.group();
        let (mine, others): (Vec<Delivery>, Vec<Delivery>) =
            deliveries.into_iter().partition(|d| d.is_for(group));
        if !others.is_empty() {
            // Replays for another group: done here without being handled.
            if let Err(err) = self.bus.ack(group, &others).await {
                tracing::warn!(group, error = %err, "acknowledging failed");
            }
        }
        if mine.is_empty() {
            return;
        }
        let events: Vec<Event> = mine.iter().map(|d| d.event.clone()).collect();
        match self.attempt_until_reachable(events).await {
            Ok(()) => self.ack(&mine).await,
            Err(_) => self.isolate(mine).await,
        }
    }

    /// Each event alone, in order: the good ones are acknowledged before any retry; a failed
    /// one and the later events of its aggregate are then delivered one by one.
    async fn isolate(&self, deliveries: Vec<Delivery>) {
        let mut done = Vec::new();
        let mut held: Vec<(Delivery, Option<String>)> = Vec::new();
        let mut blocked: HashSet<(String, i64)> = HashSet::new();
        for delivery in deliveries {
            let aggregate = (delivery.topic.clone(), delivery.event.aggregate_id);
            if blocked.contains(&aggregate) {
                held.push((delivery, None));
                continue;
            }
            match self
                .attempt_until_reachable(vec![delivery.event.clone()])
                .await
            {
                Ok(()) => done.push(delivery),
                Err(error) => {
                    blocked.insert(aggregate);
                    held.push((delivery, Some(error)));
                }
            }
        }
        if !done.is_empty() {
            self.ack(&done).await;
        }
        for (delivery, failed) in held {
            self.deliver_alone(delivery, failed).await;
        }
    }

    /// Attempts one event until it succeeds (acknowledged) or has failed permanently
    /// `max_deliveries` times (a dead letter); `failed` is the error of an attempt made already.
    async fn deliver_alone(&self, delivery: Delivery, failed: Option<String>) {
        let group = self.consumer.group();
        let mut attempts = u32::from(failed.is_some());
        let mut last_error = failed;
        let mut delay = self.config.retry_base;
        loop {
            if let Some(error) = last_error.take() {
                if attempts >= self.config.max_deliveries {
                    self.bury(delivery, error, attempts).await;
                    return;
                }
                tracing::warn!(group, event = %delivery.event.event_id, attempts, %error, "event failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            match self
                .attempt_until_reachable(vec![delivery.event.clone()])
                .await
            {
                Ok(()) => {
                    self.ack(std::slice::from_ref(&delivery)).await;
                    return;
                }
                Err(error) => {
                    attempts += 1;
                    last_error = Some(error);
                }
            }
        }
    }

    /// Attempts `events` until the outcome is not transient; a permanent failure's text.
    async fn attempt_until_reachable(&self, events: Vec<Event>) -> Result<(), String> {
        let group = self.consumer.group();
        let mut delay = self.config.retry_base.max(Duration::from_millis(1));
        loop {
            match self.attempt(events.clone()).await {
                Ok(()) => return Ok(()),
                Err(err) if err.is_transient() => {
                    tracing::warn!(group, events = events.len(), error = %err.describe(), retry_in = ?delay, "cannot reach what the consumer needs; waiting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.retry_max);
                }
                Err(err) => return Err(err.describe()),
            }
        }
    }

    /// Runs the consumer on its own task, so a panic is a failed attempt, not a dead loop.
    async fn attempt(&self, events: Vec<Event>) -> Result<(), ConsumerError> {
        let consumer = self.consumer.clone();
        let handled = tokio::spawn(async move { consumer.handle(&events).await }).await;
        match handled {
            Ok(outcome) => outcome,
            Err(join) => Err(ConsumerError::permanent(format!(
                "consumer panicked: {join}"
            ))),
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
