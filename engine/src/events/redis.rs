//! [`RedisBus`]: the event bus of cluster mode, on Redis Streams. One stream per topic
//! (`{prefix}events:{topic}`), capped with `XADD ... MAXLEN ~`; consumer groups with
//! `XREADGROUP`, `XACK` and `XAUTOCLAIM`. Each message has one field, `event`, the event as
//! JSON, so consumers outside the engine can read it, and a replayed dead letter a second,
//! `target`, the one consumer group it is for (others skip it). Events a consumer gave up on also go to
//! `{prefix}events:dead` (fields `consumer`, `error`, `event`).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use hurry_persistence::{Event, OutboxEvent};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamMaxlen, StreamReadOptions,
    StreamReadReply,
};
use redis::{AsyncCommands, AsyncConnectionConfig};
use tokio::sync::Mutex;

use super::bus::{BusError, Delivery, EventBus};

/// Redis Streams as the event bus.
pub struct RedisBus {
    client: redis::Client,
    /// Shared connection for publishing, acknowledging and claiming (reconnects by itself).
    shared: ConnectionManager,
    /// One connection per reading consumer: a blocking `XREADGROUP` holds its connection.
    readers: Mutex<HashMap<String, MultiplexedConnection>>,
    prefix: String,
    max_len: usize,
}

fn unavailable(err: redis::RedisError) -> BusError {
    BusError::Unavailable(err.to_string())
}

impl RedisBus {
    /// A bus on the Redis at `url`, with keys under `prefix`, streams capped near `max_len`.
    /// Connects lazily: a Redis that is down now only fails the calls made while it is down.
    pub fn new(url: &str, prefix: &str, max_len: usize) -> Result<Self, BusError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let shared =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
        Ok(Self {
            client,
            shared,
            readers: Mutex::new(HashMap::new()),
            prefix: prefix.to_owned(),
            max_len,
        })
    }

    fn key(&self, topic: &str) -> String {
        format!("{}events:{topic}", self.prefix)
    }

    fn topic_of_key<'a>(&self, key: &'a str) -> &'a str {
        key.strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix("events:"))
            .unwrap_or(key)
    }

    /// Turns stream entries into deliveries; entries that are not events (written by someone
    /// else) are logged and returned separately, to be acknowledged and skipped.
    fn decode(&self, topic: &str, ids: Vec<StreamId>) -> (Vec<Delivery>, Vec<String>) {
        let mut good = Vec::with_capacity(ids.len());
        let mut bad = Vec::new();
        for entry in ids {
            let parsed = entry
                .get::<String>("event")
                .ok_or_else(|| "no `event` field".to_owned())
                .and_then(|text| {
                    serde_json::from_str::<Event>(&text).map_err(|err| err.to_string())
                });
            match parsed {
                Ok(event) => good.push(Delivery {
                    topic: topic.to_owned(),
                    target: entry.get::<String>("target"),
                    id: entry.id,
                    event,
                }),
                Err(reason) => {
                    tracing::warn!(topic, id = %entry.id, %reason, "skipping a malformed stream entry");
                    bad.push(entry.id);
                }
            }
        }
        (good, bad)
    }

    async fn ack_ids(&self, group: &str, topic: &str, ids: &[String]) -> Result<(), BusError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.shared.clone();
        let _: i64 = conn
            .xack(self.key(topic), group, ids)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn reader(
        &self,
        consumer: &str,
        wait: Duration,
    ) -> Result<MultiplexedConnection, BusError> {
        let mut readers = self.readers.lock().await;
        if let Some(conn) = readers.get(consumer) {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(wait + Duration::from_secs(2)));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)?;
        readers.insert(consumer.to_owned(), conn.clone());
        Ok(conn)
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, events: &[OutboxEvent]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for outbox in events {
            let json = serde_json::to_string(&outbox.event)
                .map_err(|err| BusError::Unavailable(format!("encode event: {err}")))?;
            let mut fields = vec![("event", json)];
            if let Some(target) = &outbox.target {
                fields.push(("target", target.clone()));
            }
            pipe.xadd_maxlen(
                self.key(outbox.event.topic()),
                StreamMaxlen::Approx(self.max_len),
                "*",
                &fields,
            )
            .ignore();
        }
        let mut conn = self.shared.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn join(&self, group: &str, topics: &[&str]) -> Result<(), BusError> {
        let mut conn = self.shared.clone();
        for topic in topics {
            let created: Result<(), _> = conn
                .xgroup_create_mkstream(self.key(topic), group, "0")
                .await;
            match created {
                Ok(()) => {}
                Err(err) if err.code() == Some("BUSYGROUP") => {}
                Err(err) => return Err(unavailable(err)),
            }
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
        let keys: Vec<String> = topics.iter().map(|topic| self.key(topic)).collect();
        let ids = vec![">"; keys.len()];
        let options = StreamReadOptions::default()
            .group(group, consumer)
            .count(count)
            .block(
                usize::try_from(wait.as_millis())
                    .unwrap_or(usize::MAX)
                    .max(1),
            );
        let mut conn = self.reader(consumer, wait).await?;
        let reply: Result<Option<StreamReadReply>, _> =
            conn.xread_options(&keys, &ids, &options).await;
        let reply = match reply {
            Ok(reply) => reply.unwrap_or_default(),
            Err(err) => {
                // A broken reading connection is replaced on the next read.
                self.readers.lock().await.remove(consumer);
                return Err(unavailable(err));
            }
        };
        let mut out = Vec::new();
        for stream in reply.keys {
            let topic = self.topic_of_key(&stream.key).to_owned();
            let (good, bad) = self.decode(&topic, stream.ids);
            self.ack_ids(group, &topic, &bad).await?;
            out.extend(good);
        }
        Ok(out)
    }

    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        topics: &[&str],
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let mut conn = self.shared.clone();
        let mut out = Vec::new();
        for topic in topics {
            let reply: StreamAutoClaimReply = conn
                .xautoclaim_options(
                    self.key(topic),
                    group,
                    consumer,
                    u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX),
                    "0-0",
                    StreamAutoClaimOptions::default().count(count),
                )
                .await
                .map_err(unavailable)?;
            let (good, bad) = self.decode(topic, reply.claimed);
            self.ack_ids(group, topic, &bad).await?;
            out.extend(good);
        }
        Ok(out)
    }

    async fn publish_dead(
        &self,
        consumer: &str,
        event: &Event,
        error: &str,
    ) -> Result<(), BusError> {
        let json = serde_json::to_string(event)
            .map_err(|err| BusError::Unavailable(format!("encode event: {err}")))?;
        let mut conn = self.shared.clone();
        let _: Option<String> = conn
            .xadd_maxlen(
                self.key("dead"),
                StreamMaxlen::Approx(self.max_len),
                "*",
                &[
                    ("consumer", consumer),
                    ("error", error),
                    ("event", json.as_str()),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.shared.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn ack(&self, group: &str, deliveries: &[Delivery]) -> Result<(), BusError> {
        let mut by_topic: HashMap<&str, Vec<String>> = HashMap::new();
        for delivery in deliveries {
            by_topic
                .entry(delivery.topic.as_str())
                .or_default()
                .push(delivery.id.clone());
        }
        for (topic, ids) in by_topic {
            self.ack_ids(group, topic, &ids).await?;
        }
        Ok(())
    }
}
