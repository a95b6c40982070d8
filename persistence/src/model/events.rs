//! Events as they travel (outbox, bus, inbox), the sales ledger and dead letters.

use chrono::{DateTime, Utc};

/// A domain event as it travels: the outbox row's content, JSON on the wire
/// (`docs/events.md` lists the types).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Unique per event; consumers' inboxes are keyed by it. A replayed dead letter keeps it.
    pub event_id: uuid::Uuid,
    /// `aggregate.verb`, for example `order.created`; the part before the dot is the topic.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Version of the payload's shape.
    pub version: i32,
    /// The order, user or item the event is about; events of one aggregate keep their order.
    pub aggregate_id: i64,
    pub occurred_at: DateTime<Utc>,
    pub payload: Payload,
}

/// An event's payload: JSON kept as its text, so that relaying an event (store to bus) never
/// parses and prints it again; consumers parse what they read from it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<serde_json::value::RawValue>);

impl Payload {
    /// The payload of stored JSON text; `Err` when the text is not JSON.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(Payload)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The payload parsed as `T`.
    pub fn parse<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The payload as a JSON value.
    pub fn value(&self) -> serde_json::Value {
        self.parse().unwrap_or(serde_json::Value::Null)
    }
}

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Self {
        Payload(serde_json::value::to_raw_value(&value).expect("a JSON value prints"))
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Event {
    /// The topic (stream) the event belongs to: the part of its type before the first dot.
    pub fn topic(&self) -> &str {
        topic_of(&self.event_type)
    }
}

/// The topic of an event type: the part before the first dot.
pub fn topic_of(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

/// An unpublished outbox row: its position in the outbox and its event.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Outbox row id: increases with commit order on SQLite, with insertion order on PostgreSQL.
    pub id: i64,
    pub event: Event,
    /// The one consumer group this row is for (a replayed dead letter goes back to the
    /// consumer that gave up on it only); `None`: every group.
    pub target: Option<String>,
}

/// The share of the outbox one relay pass works on: aggregates with
/// `aggregate_id mod count == index`, so all events of one aggregate go through one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayShard {
    pub index: u32,
    pub count: u32,
}

/// What one relay pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayRun {
    /// Events handed to the sink and marked published.
    pub published: usize,
    /// Another relay held the shard; nothing was done.
    pub busy: bool,
}

/// A sale or its reversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    Sale,
    Reversal,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Sale => "sale",
            LedgerKind::Reversal => "reversal",
        }
    }
}

/// A ledger entry to write for one order line (the store fills in the item's seller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub order_id: i64,
    pub item_id: i64,
    pub kind: LedgerKind,
    pub quantity: i64,
    pub amount: i64,
}

/// A stored ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    pub id: i64,
    pub event_id: uuid::Uuid,
    pub order_id: i64,
    pub item_id: i64,
    pub seller_id: i64,
    pub kind: String,
    pub quantity: i64,
    pub amount: i64,
}

/// What a consumer changes in the store for one event, in the transaction that records the
/// event in the consumer's inbox. An event already in the inbox changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Only the inbox record (the consumer's effect is outside the store, or there is none).
    Record,
    /// Ledger entries.
    Ledger(Vec<LedgerEntry>),
}

/// An event a consumer gave up on.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub consumer: String,
    pub event: Event,
    pub error: String,
    /// Attempts made, the last one included.
    pub deliveries: u32,
}

/// A stored dead letter.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRecord {
    pub id: i64,
    pub consumer: String,
    pub event: Event,
    pub error: String,
    pub deliveries: u32,
    pub failed_at: DateTime<Utc>,
    /// When an admin last replayed it.
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Rows removed by a retention pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub outbox: u64,
    pub inbox: u64,
}
