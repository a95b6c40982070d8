//! [`LocalBus`]: the event bus of embedded mode, in process, with the semantics of Redis
//! Streams consumer groups (see [`EventBus`]). Messages live in memory until every group has
//! acknowledged them; a topic no group has joined keeps nothing. What a crash loses is
//! published again from the outbox (see [`EventBus::acked_through`]), and consumers' inboxes
//! drop the repeats.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hurry_persistence::OutboxEvent;
use tokio::sync::Notify;

use super::bus::{BusError, Delivery, EventBus};

/// The in-process bus.
#[derive(Default)]
pub struct LocalBus {
    topics: Mutex<HashMap<String, Topic>>,
    /// Highest outbox id published.
    last_published: Mutex<i64>,
    arrived: Notify,
}

/// One topic's messages (`log[0]` has sequence number `base`) and its groups.
#[derive(Default)]
struct Topic {
    log: VecDeque<OutboxEvent>,
    base: u64,
    groups: HashMap<String, Group>,
}

struct Group {
    /// Sequence number of the next message no consumer has been given.
    next: u64,
    pending: BTreeMap<u64, Pending>,
}

struct Pending {
    consumer: String,
    delivered_at: Instant,
}

impl Topic {
    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    fn message(&self, seq: u64) -> Option<&OutboxEvent> {
        self.log
            .get(usize::try_from(seq.checked_sub(self.base)?).ok()?)
    }

    fn delivery(&self, topic: &str, seq: u64) -> Option<Delivery> {
        self.message(seq).map(|outbox| Delivery {
            topic: topic.to_owned(),
            id: seq.to_string(),
            event: outbox.event.clone(),
            target: outbox.target.clone(),
        })
    }

    /// Drops messages every group is done with.
    fn trim(&mut self) {
        let done = self
            .groups
            .values()
            .map(|group| {
                let first_pending = group.pending.keys().next().copied();
                first_pending.map_or(group.next, |seq| seq.min(group.next))
            })
            .min()
            .unwrap_or_else(|| self.end());
        while self.base < done && !self.log.is_empty() {
            self.log.pop_front();
            self.base += 1;
        }
    }

    /// Outbox id of the first message some group has not acknowledged.
    fn first_unacked(&self) -> Option<i64> {
        self.groups
            .values()
            .filter_map(|group| {
                let pending = group.pending.keys().next().copied();
                let undelivered = (group.next < self.end()).then_some(group.next);
                let seq = match (pending, undelivered) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b)?,
                };
                self.message(seq).map(|outbox| outbox.id)
            })
            .min()
    }
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Topic>> {
        self.topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Gives up to `count` undelivered messages of `topics` to `consumer`.
    fn take_new(
        &self,
        group: &str,
        consumer: &str,
        topics: &[&str],
        count: usize,
    ) -> Vec<Delivery> {
        let mut all = self.topics();
        let mut out = Vec::new();
        for &name in topics {
            let Some(topic) = all.get_mut(name) else {
                continue;
            };
            let end = topic.end();
            let Some(state) = topic.groups.get_mut(group) else {
                continue;
            };
            let mut taken = Vec::new();
            while state.next < end && out.len() + taken.len() < count {
                taken.push(state.next);
                state.pending.insert(
                    state.next,
                    Pending {
                        consumer: consumer.to_owned(),
                        delivered_at: Instant::now(),
                    },
                );
                state.next += 1;
            }
            out.extend(
                taken
                    .into_iter()
                    .filter_map(|seq| topic.delivery(name, seq)),
            );
        }
        out
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<(), BusError> {
        {
            let mut all = self.topics();
            for outbox in events {
                let topic = all.entry(outbox.event.topic().to_owned()).or_default();
                topic.log.push_back(outbox.clone());
                // A topic no group reads keeps nothing (in process, every group has joined
                // before the relay starts).
                topic.trim();
            }
        }
        if let Some(last) = events.iter().map(|event| event.id).max() {
            let mut published = self
                .last_published
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *published = (*published).max(last);
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn join(&self, group: &str, topics: &[&str]) -> Result<(), BusError> {
        let mut all = self.topics();
        for &name in topics {
            let topic = all.entry(name.to_owned()).or_default();
            let base = topic.base;
            topic.groups.entry(group.to_owned()).or_insert(Group {
                next: base,
                pending: BTreeMap::new(),
            });
        }
        Ok(())
    }

    async fn read(
        &self,
        group: &str,
        consumer: &str,
        topics: &[&str],
        count: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so a publish in between is not missed.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let found = self.take_new(group, consumer, topics, count);
            if !found.is_empty() {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        topics: &[&str],
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut all = self.topics();
        let mut out = Vec::new();
        for &name in topics {
            let Some(topic) = all.get_mut(name) else {
                continue;
            };
            let Some(state) = topic.groups.get_mut(group) else {
                continue;
            };
            let mut claimed = Vec::new();
            for (seq, pending) in state.pending.iter_mut() {
                if out.len() + claimed.len() >= count {
                    break;
                }
                if pending.delivered_at.elapsed() >= min_idle {
                    pending.consumer = consumer.to_owned();
                    pending.delivered_at = Instant::now();
                    claimed.push(*seq);
                }
            }
            out.extend(
                claimed
                    .into_iter()
                    .filter_map(|seq| topic.delivery(name, seq)),
            );
        }
        Ok(out)
    }

    async fn ack(&self, group: &str, deliveries: &[Delivery]) -> Result<(), BusError> {
        let mut all = self.topics();
        for delivery in deliveries {
            let (Some(topic), Ok(seq)) = (all.get_mut(&delivery.topic), delivery.id.parse()) else {
                continue;
            };
            if let Some(state) = topic.groups.get_mut(group) {
                state.pending.remove(&seq);
            }
            topic.trim();
        }
        Ok(())
    }

    fn acked_through(&self) -> Option<i64> {
        let all = self.topics();
        let last = *self
            .last_published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let first_unacked = all.values().filter_map(Topic::first_unacked).min();
        Some(first_unacked.map_or(last, |id| id - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hurry_persistence::Event;

    fn outbox(id: i64, event_type: &str) -> OutboxEvent {
        OutboxEvent {
            id,
            event: Event {
                event_id: uuid::Uuid::new_v4(),
                event_type: event_type.to_owned(),
                version: 1,
                aggregate_id: id,
                occurred_at: chrono::Utc::now(),
                payload: serde_json::json!({}).into(),
            },
            target: None,
        }
    }

    #[tokio::test]
    async fn acked_through_stops_before_the_first_message_a_group_still_needs() {
        // Arrange
        let bus = LocalBus::new();
        bus.join("g", &["order"]).await.unwrap();
        let start = bus.acked_through();
        bus.publish(&[outbox(1, "order.created"), outbox(2, "order.created")])
            .await
            .unwrap();
        bus.publish(&[outbox(3, "user.created"), outbox(4, "order.created")])
            .await
            .unwrap();
        let published = bus.acked_through();
        let taken = bus
            .read("g", "c", &["order"], 10, Duration::ZERO)
            .await
            .unwrap();

        // Act
        bus.ack("g", &taken[1..]).await.unwrap();
        let first_still_pending = bus.acked_through();
        bus.ack("g", &taken[..1]).await.unwrap();
        let all_done = bus.acked_through();

        // Assert
        assert_eq!(start, Some(0));
        assert_eq!(published, Some(0), "nothing acknowledged yet");
        assert_eq!(first_still_pending, Some(0), "1 is still pending");
        assert_eq!(
            all_done,
            Some(4),
            "3 has no reader; the rest is acknowledged"
        );
        assert!(
            bus.topics().values().all(|topic| topic.log.is_empty()),
            "trimmed"
        );
    }
}
