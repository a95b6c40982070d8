//! The end-of-run audit: what the harness saw against what the server stored, for I1–I5.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::stats::Outcome;

/// Order statuses that give their units back (not held by the buyer).
const RELEASING: [&str; 4] = ["payment_failed", "expired", "cancelled", "returned"];

/// The server's view of the drop (`GET /admin/loadtest/drops/{id}`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerDrop {
    pub item_id: i64,
    pub strategy: String,
    pub total_units: i64,
    pub per_user_limit: i64,
    /// Units still sellable, when the server knows.
    pub available: Option<i64>,
    /// Events the server has yet to publish (absent from older servers).
    #[serde(default)]
    pub outbox_backlog: Option<u64>,
    pub orders: Vec<ServerOrder>,
}

/// One stored order with a line for the drop.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerOrder {
    pub id: i64,
    pub user_id: i64,
    pub quantity: i64,
    pub status: String,
    pub idempotency_key: Option<String>,
}

/// A broken invariant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// What the audit checked and found.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub units: i64,
    /// Units held by buyers according to the store.
    pub sold: i64,
    pub available: Option<i64>,
    pub stored_orders: usize,
    pub acknowledged: usize,
    pub retried_pairs: usize,
    /// Whether I3 was checked (the server reported what is still available).
    pub checked_i3: bool,
    pub violations: Vec<Violation>,
}

impl AuditReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks I1, I2, I4, I5 and, when `quiescent` and the server knows what is left, I3.
/// `user_ids[shopper]` is the user id of each shopper index.
pub fn audit(
    seen: &[Outcome],
    user_ids: &[i64],
    server: &ServerDrop,
    quiescent: bool,
) -> AuditReport {
    let mut violations = Vec::new();
    let mut violation = |invariant: &'static str, detail: String| {
        // A broken run can break one rule thousands of times: keep the first few of each.
        let same = violations
            .iter()
            .filter(|v: &&Violation| v.invariant == invariant)
            .count();
        if same < 20 {
            violations.push(Violation { invariant, detail });
        }
    };
    let held: Vec<&ServerOrder> = server
        .orders
        .iter()
        .filter(|order| !RELEASING.contains(&order.status.as_str()))
        .collect();
    let sold: i64 = held.iter().map(|order| order.quantity).sum();

    // I1: never more sold than the drop has, in the store or in the answers.
    if sold > server.total_units {
        violation(
            "I1",
            format!("{sold} units held of {} in the store", server.total_units),
        );
    }
    let mut acknowledged: BTreeMap<i64, &Outcome> = BTreeMap::new();
    for outcome in seen.iter().filter(|o| o.status == 201) {
        match outcome.order_id {
            Some(id) => {
                acknowledged.entry(id).or_insert(outcome);
            }
            None => violation("I2", format!("a 201 without an order id: {outcome:?}")),
        }
    }
    let answered_units: i64 = acknowledged.values().map(|o| o.quantity).sum();
    if answered_units > server.total_units {
        violation(
            "I1",
            format!(
                "{answered_units} units acknowledged with 201 of {}",
                server.total_units
            ),
        );
    }

    // I2: every acknowledged order is stored, for its buyer, with its quantity.
    let stored: HashMap<i64, &ServerOrder> = server.orders.iter().map(|o| (o.id, o)).collect();
    for (id, outcome) in &acknowledged {
        let buyer = user_ids.get(outcome.shopper).copied();
        match stored.get(id) {
            None => violation(
                "I2",
                format!("order {id} was acknowledged but is not stored"),
            ),
            Some(order) if Some(order.user_id) != buyer || order.quantity != outcome.quantity => {
                violation(
                    "I2",
                    format!(
                        "order {id} is stored for user {} x{}, answered to user {buyer:?} x{}",
                        order.user_id, order.quantity, outcome.quantity
                    ),
                )
            }
            Some(_) => {}
        }
    }

    // I4: nobody holds more than the per-user limit.
    let mut per_user: HashMap<i64, i64> = HashMap::new();
    for order in &held {
        *per_user.entry(order.user_id).or_default() += order.quantity;
    }
    for (user, units) in &per_user {
        if *units > server.per_user_limit {
            violation(
                "I4",
                format!(
                    "user {user} holds {units} units (limit {})",
                    server.per_user_limit
                ),
            );
        }
    }

    // I5: a retry got its original's answer; no key made two orders.
    let mut by_request: HashMap<usize, Vec<&Outcome>> = HashMap::new();
    for outcome in seen {
        by_request.entry(outcome.request).or_default().push(outcome);
    }
    let mut retried_pairs = 0;
    for attempts in by_request.values().filter(|a| a.len() > 1) {
        // Only definite answers are comparable: no answer or 503 means "try again".
        let definite: Vec<&&Outcome> = attempts
            .iter()
            .filter(|o| o.status != 0 && o.status < 500)
            .collect();
        retried_pairs += 1;
        if let [first, rest @ ..] = definite.as_slice() {
            for other in rest {
                if other.status != first.status || other.order_id != first.order_id {
                    violation(
                        "I5",
                        format!(
                            "request {} answered {} (order {:?}) and {} (order {:?})",
                            first.request,
                            first.label(),
                            first.order_id,
                            other.label(),
                            other.order_id
                        ),
                    );
                }
            }
        }
    }
    let mut orders_per_key: HashMap<(i64, &str), usize> = HashMap::new();
    for order in &server.orders {
        if let Some(key) = &order.idempotency_key {
            *orders_per_key.entry((order.user_id, key)).or_default() += 1;
        }
    }
    for ((user, key), count) in orders_per_key.into_iter().filter(|(_, n)| *n > 1) {
        violation(
            "I5",
            format!("key {key} of user {user} made {count} orders"),
        );
    }

    // I3: nothing leaked once quiet: what is left plus what is held is the drop.
    let checked_i3 = quiescent && server.available.is_some();
    if let (true, Some(available)) = (quiescent, server.available) {
        if available + sold != server.total_units {
            violation(
                "I3",
                format!(
                    "available {available} + held {sold} != {} units",
                    server.total_units
                ),
            );
        }
    }

    AuditReport {
        units: server.total_units,
        sold,
        available: server.available,
        stored_orders: server.orders.len(),
        acknowledged: acknowledged.len(),
        retried_pairs,
        checked_i3,
        violations,
    }
}

#[cfg(test)]
mod tests;
