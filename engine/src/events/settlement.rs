//! [`SettlementConsumer`]: writes the sellers' settlement entries from payment events.
//! `order.paid` adds a `sale` per line (its amount, and the gateway's fee at the gateway's
//! rate, rounded down to the won); `payment.refunded` adds a `reversal` per line for the
//! refunded share (negative amounts). Entries go in with the inbox row, in one transaction per
//! batch. The daily job ([`Store::close_settlements`](hurry_persistence::SettlementStore))
//! closes the days.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use hurry_persistence::{Event, SettlementEntry, Store};

use super::consumer::{Consumer, ConsumerError};

/// The settlement consumer's group and inbox name.
pub const SETTLEMENT: &str = "settlement";

pub struct SettlementConsumer {
    store: Arc<dyn Store>,
    /// Each gateway's fee, in basis points of the amount (300 is 3 %).
    fee_rates_bp: HashMap<String, i64>,
}

impl SettlementConsumer {
    pub fn new(store: Arc<dyn Store>, fee_rates_bp: HashMap<String, i64>) -> Self {
        Self {
            store,
            fee_rates_bp,
        }
    }

    /// The fee of `amount` taken through `provider`, rounded down.
    fn fee(&self, provider: &str, amount: i64) -> i64 {
        let rate_bp = self.fee_rates_bp.get(provider).copied().unwrap_or(0);
        proportion(amount, rate_bp, 10_000)
    }

    async fn entries(&self, event: &Event) -> Result<Vec<SettlementEntry>, ConsumerError> {
        #[derive(serde::Deserialize)]
        struct Paid {
            order_id: i64,
            provider: String,
        }
        #[derive(serde::Deserialize)]
        struct Refunded {
            order_id: i64,
            payment_id: i64,
            amount: i64,
            payment_amount: i64,
        }
        let day = event.occurred_at.date_naive();
        let (order_id, provider, kind, share) = match event.event_type.as_str() {
            "order.paid" => {
                let paid: Paid = event.payload.parse().map_err(|err| {
                    ConsumerError::permanent(format!("order.paid payload: {err}"))
                })?;
                (paid.order_id, paid.provider, "sale", None)
            }
            "payment.refunded" => {
                let refunded: Refunded = event.payload.parse().map_err(|err| {
                    ConsumerError::permanent(format!("payment.refunded payload: {err}"))
                })?;
                let payment = self
                    .store
                    .payment_by_id(refunded.payment_id)
                    .await?
                    .ok_or_else(|| {
                        ConsumerError::permanent(format!(
                            "payment {} not found",
                            refunded.payment_id
                        ))
                    })?;
                let share = (refunded.amount, refunded.payment_amount.max(1));
                (refunded.order_id, payment.provider, "reversal", Some(share))
            }
            _ => return Ok(Vec::new()),
        };
        let order = self
            .store
            .order_by_id(order_id)
            .await?
            .ok_or_else(|| ConsumerError::permanent(format!("order {order_id} not found")))?;
        Ok(order
            .lines
            .iter()
            .map(|line| {
                let fee = self.fee(&provider, line.amount);
                let (gross, fee) = match share {
                    None => (line.amount, fee),
                    // The refunded share of the line, and of its fee (all of both for a whole
                    // refund).
                    Some((refunded, total)) => (
                        -proportion(line.amount, refunded, total),
                        -proportion(fee, refunded, total),
                    ),
                };
                SettlementEntry {
                    order_id,
                    item_id: line.item_id,
                    provider: provider.clone(),
                    kind,
                    gross,
                    fee,
                    day,
                }
            })
            .collect())
    }
}

/// `value × part / whole`, rounded down, without overflow.
fn proportion(value: i64, part: i64, whole: i64) -> i64 {
    i64::try_from(i128::from(value) * i128::from(part) / i128::from(whole)).unwrap_or(i64::MAX)
}

#[async_trait]
impl Consumer for SettlementConsumer {
    fn group(&self) -> &'static str {
        SETTLEMENT
    }

    fn topics(&self) -> &'static [&'static str] {
        &["order", "payment"]
    }

    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        let mut effects = Vec::with_capacity(events.len());
        for event in events {
            effects.push((event.event_id, self.entries(event).await?));
        }
        self.store.record_settlement(SETTLEMENT, &effects).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::proportion;

    #[test]
    fn fees_round_down_to_the_won_and_a_whole_refund_reverses_everything() {
        assert_eq!(proportion(19_000, 300, 10_000), 570, "3 % of 19,000");
        assert_eq!(proportion(19_999, 275, 10_000), 549, "549.97 rounds down");
        assert_eq!(proportion(19_000, 0, 10_000), 0, "no rate, no fee");
        assert_eq!(
            proportion(1_000_000_000_000_000, 300, 10_000),
            30_000_000_000_000,
            "large amounts do not overflow"
        );
        assert_eq!(proportion(570, 19_000, 19_000), 570, "a whole refund");
        assert_eq!(proportion(570, 9_500, 19_000), 285, "half of it");
        assert_eq!(proportion(i64::MAX, 1, 1), i64::MAX);
    }
}
