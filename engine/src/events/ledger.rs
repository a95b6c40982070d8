//! [`LedgerConsumer`]: writes the sales ledger from order events. `order.created` adds a
//! `sale` entry per line; an order leaving for a status that gives its units back
//! (`cancelled`, `expired`, `payment_failed`, `returned`) adds a `reversal` per line. Each
//! entry carries the item's seller, for settlement. One transaction per batch, inbox included.
//! A store that cannot be reached is a transient error (waited out); a payload that does not
//! parse, an unknown order or a ledger entry for an unknown item is permanent (that event
//! alone becomes a dead letter).

use std::sync::Arc;

use async_trait::async_trait;
use hurry_persistence::{Effect, Event, LedgerEntry, LedgerKind, OrderLine, Store};

use super::consumer::{Consumer, ConsumerError};

/// The ledger's consumer group and inbox name.
pub const LEDGER: &str = "ledger";

pub struct LedgerConsumer {
    store: Arc<dyn Store>,
}

impl LedgerConsumer {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    async fn effect(&self, event: &Event) -> Result<Effect, ConsumerError> {
        let releasing = [
            "order.cancelled",
            "order.expired",
            "order.payment_failed",
            "order.returned",
        ];
        let (kind, lines) = if event.event_type == "order.created" {
            #[derive(serde::Deserialize)]
            struct OrderCreated {
                lines: Vec<Line>,
            }
            #[derive(serde::Deserialize)]
            struct Line {
                item_id: i64,
                quantity: i64,
                unit_price: i64,
                amount: i64,
            }
            let created: OrderCreated = event
                .payload
                .parse()
                .map_err(|err| ConsumerError::permanent(format!("order.created payload: {err}")))?;
            let lines: Vec<OrderLine> = created
                .lines
                .into_iter()
                .map(|line| OrderLine {
                    item_id: line.item_id,
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                    amount: line.amount,
                })
                .collect();
            (LedgerKind::Sale, lines)
        } else if releasing.contains(&event.event_type.as_str()) {
            let order = self
                .store
                .order_by_id(event.aggregate_id)
                .await?
                .ok_or_else(|| {
                    ConsumerError::permanent(format!("order {} not found", event.aggregate_id))
                })?;
            (LedgerKind::Reversal, order.lines)
        } else {
            return Ok(Effect::Record);
        };
        let order_id = event.aggregate_id;
        Ok(Effect::Ledger(
            lines
                .into_iter()
                .map(|line| LedgerEntry {
                    order_id,
                    item_id: line.item_id,
                    kind,
                    quantity: line.quantity,
                    amount: line.amount,
                })
                .collect(),
        ))
    }
}

#[async_trait]
impl Consumer for LedgerConsumer {
    fn group(&self) -> &'static str {
        LEDGER
    }

    fn topics(&self) -> &'static [&'static str] {
        &["order"]
    }

    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        let mut effects = Vec::with_capacity(events.len());
        for event in events {
            effects.push((event.event_id, self.effect(event).await?));
        }
        self.store.apply_effects(LEDGER, &effects).await?;
        Ok(())
    }
}
