//! `hurry-loadtest drop --pay`: after the drop, every order it created is paid the way a
//! shopper would through the sandbox gateway (open a payment where the server sends it, check
//! out at the sandbox, confirm; an `unavailable` answer tries again), with the sandbox's
//! faults set from `--pg-faults`. Then the money is audited: once reconciliation has settled
//! every payment in doubt, the sandbox's charges are exactly the paid orders (I6) and no order
//! is charged twice (I5).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::{ServerDrop, Violation};
use crate::client::Api;

/// Statuses of an order whose payment went through.
const PAID: [&str; 4] = ["paid", "preparing", "shipping", "delivered"];

/// Tries of one order's payment before the shopper gives up (each `unavailable`).
const NUM_TRIES: usize = 20;

/// How one order's payment ended, as its shopper saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayOutcome {
    Paid,
    Failed,
    /// 503 `outcome_unknown`: left to reconciliation.
    Unknown,
    /// Every try answered `unavailable`.
    GaveUp,
}

/// The payment phase in numbers, and the money audit.
#[derive(Debug, Clone, Serialize)]
pub struct PayReport {
    pub attempted: usize,
    pub outcomes: BTreeMap<String, usize>,
    /// From the first payment opened to the last answer.
    pub seconds: f64,
    /// Orders answered `paid` per second over `seconds`.
    pub paid_per_sec: f64,
    /// Time to pay one order (open, checkout, confirm, with its retries), in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Milliseconds from the first payment opened to the first order answered `paid` through
    /// each gateway (with Toss failing from the start, NicePay's is the time to fail over).
    pub first_paid_ms: BTreeMap<String, f64>,
    /// Charges the sandbox holds money for, per provider, after reconciliation.
    pub charged: BTreeMap<String, usize>,
    /// Orders stored as paid (or further along) after reconciliation.
    pub paid_orders: usize,
    pub violations: Vec<Violation>,
}

/// Where the sandbox is, the faults to give it and how long reconciliation may take.
pub struct PayPlan {
    /// The sandbox's base URL (the mounted one: the target's `/pg-sandbox`).
    pub sandbox: String,
    /// `PUT /faults` bodies, one per gateway.
    pub faults: Vec<Value>,
    pub settle: Duration,
    pub connections: usize,
}

/// Pays `orders` (`(shopper's token, order id)`), then audits the money against the drop's
/// stored orders.
pub async fn pay_and_audit(
    api: &Api,
    admin: &str,
    plan: &PayPlan,
    orders: &[(String, i64)],
    drop_view: impl AsyncFn() -> anyhow::Result<ServerDrop>,
) -> anyhow::Result<PayReport> {
    for faults in &plan.faults {
        sandbox_call(
            api,
            admin,
            reqwest::Method::PUT,
            &plan.sandbox,
            "/faults",
            Some(faults),
        )
        .await
        .context("setting the sandbox's faults")?;
    }
    let started = Instant::now();
    let first_paid_by = std::sync::Mutex::new(BTreeMap::new());
    let first_paid = &first_paid_by;
    let paid: Vec<(PayOutcome, Duration)> = futures::stream::iter(orders)
        .map(|(token, order_id)| async move {
            let began = Instant::now();
            let (outcome, provider) = pay_one(api, &plan.sandbox, token, *order_id).await;
            if outcome == PayOutcome::Paid {
                let at_ms = started.elapsed().as_secs_f64() * 1_000.0;
                let mut first = first_paid.lock().unwrap_or_else(|p| p.into_inner());
                let entry = first.entry(provider).or_insert(at_ms);
                *entry = entry.min(at_ms);
            }
            (outcome, began.elapsed())
        })
        .buffer_unordered(plan.connections.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    for faults in &plan.faults {
        let cleared = json!({ "provider": faults["provider"] });
        sandbox_call(
            api,
            admin,
            reqwest::Method::PUT,
            &plan.sandbox,
            "/faults",
            Some(&cleared),
        )
        .await?;
    }
    let order_ids: BTreeSet<i64> = orders.iter().map(|(_, id)| *id).collect();
    let money = audit_money(api, admin, plan, &order_ids, drop_view).await?;
    let mut outcomes = BTreeMap::new();
    for (outcome, _) in &paid {
        let name = serde_json::to_value(outcome)?
            .as_str()
            .unwrap_or("?")
            .to_owned();
        *outcomes.entry(name).or_insert(0) += 1;
    }
    let mut latencies: Vec<Duration> = paid.iter().map(|(_, latency)| *latency).collect();
    latencies.sort();
    let num_paid = paid.iter().filter(|(o, _)| *o == PayOutcome::Paid).count();
    Ok(PayReport {
        attempted: orders.len(),
        outcomes,
        seconds,
        paid_per_sec: if seconds > 0.0 {
            num_paid as f64 / seconds
        } else {
            0.0
        },
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        first_paid_ms: first_paid_by
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
        charged: money.charged,
        paid_orders: money.paid_orders,
        violations: money.violations,
    })
}

fn percentile_ms(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1_000.0
}

/// One shopper paying one order; answers the outcome and the gateway of its last payment.
async fn pay_one(api: &Api, sandbox: &str, token: &str, order_id: i64) -> (PayOutcome, String) {
    let mut provider = String::new();
    let outcome = pay_tries(api, sandbox, token, order_id, &mut provider).await;
    (outcome, provider)
}

async fn pay_tries(
    api: &Api,
    sandbox: &str,
    token: &str,
    order_id: i64,
    provider: &mut String,
) -> PayOutcome {
    for _ in 0..NUM_TRIES {
        let Ok((status, payment)) = post(
            api,
            &api.url(&format!("/api/v1/orders/{order_id}/payments")),
            Some(token),
            &json!({}),
        )
        .await
        else {
            continue;
        };
        if status != 201 {
            if status == 503 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            return PayOutcome::Failed;
        }
        payment["provider"]
            .as_str()
            .unwrap_or("?")
            .clone_into(provider);
        let checkout = json!({"provider": payment["provider"], "pg_order_id": payment["pg_order_id"],
                              "amount": payment["amount"]});
        let Ok((201, checkout)) = post(api, &format!("{sandbox}/checkout"), None, &checkout).await
        else {
            continue;
        };
        let confirm = json!({"payment_key": checkout["payment_key"],
                             "pg_order_id": payment["pg_order_id"], "amount": payment["amount"]});
        match post(
            api,
            &api.url("/api/v1/payments/confirm"),
            Some(token),
            &confirm,
        )
        .await
        {
            Ok((200, answer)) if answer["status"] == "paid" => return PayOutcome::Paid,
            Ok((200, _)) => return PayOutcome::Failed,
            Ok((503, answer)) if answer["error"]["code"] == "outcome_unknown" => {
                return PayOutcome::Unknown
            }
            Ok((503, _)) | Err(_) => continue,
            Ok(_) => return PayOutcome::Failed,
        }
    }
    PayOutcome::GaveUp
}

async fn post(
    api: &Api,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let mut request = api.client.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

async fn sandbox_call(
    api: &Api,
    admin: &str,
    method: reqwest::Method,
    sandbox: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    let mut request = api
        .client
        .request(method, format!("{sandbox}{path}"))
        .bearer_auth(admin);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!("sandbox {path}: {status} {body}");
    }
    Ok(body)
}

struct Money {
    charged: BTreeMap<String, usize>,
    paid_orders: usize,
    violations: Vec<Violation>,
}

/// Compares the sandbox's charges with the stored orders until they agree or `plan.settle`
/// is over (payments in doubt are reconciled by the server meanwhile).
async fn audit_money(
    api: &Api,
    admin: &str,
    plan: &PayPlan,
    order_ids: &BTreeSet<i64>,
    drop_view: impl AsyncFn() -> anyhow::Result<ServerDrop>,
) -> anyhow::Result<Money> {
    let deadline = Instant::now() + plan.settle;
    loop {
        let charges = sandbox_call(
            api,
            admin,
            reqwest::Method::GET,
            &plan.sandbox,
            "/charges",
            None,
        )
        .await?;
        let view = drop_view().await?;
        let money = compare(&charges, &view, order_ids);
        if money.violations.is_empty() || Instant::now() >= deadline {
            return Ok(money);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The order id in a payment's gateway order id (`hurry-{order}-{payment}`).
fn order_of(pg_order_id: &str) -> Option<i64> {
    pg_order_id
        .strip_prefix("hurry-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn compare(charges: &Value, view: &ServerDrop, order_ids: &BTreeSet<i64>) -> Money {
    let mut violations = Vec::new();
    let mut charged = BTreeMap::new();
    let mut charges_per_order: BTreeMap<i64, usize> = BTreeMap::new();
    for charge in charges["charges"].as_array().into_iter().flatten() {
        let Some(order_id) = charge["pg_order_id"].as_str().and_then(order_of) else {
            continue;
        };
        if !order_ids.contains(&order_id) || charge["status"] != "paid" {
            continue;
        }
        *charges_per_order.entry(order_id).or_insert(0) += 1;
        let provider = charge["provider"].as_str().unwrap_or("?").to_owned();
        *charged.entry(provider).or_insert(0) += 1;
    }
    let paid: BTreeSet<i64> = view
        .orders
        .iter()
        .filter(|order| order_ids.contains(&order.id) && PAID.contains(&order.status.as_str()))
        .map(|order| order.id)
        .collect();
    for (order_id, num_charges) in &charges_per_order {
        if *num_charges > 1 {
            violations.push(Violation {
                invariant: "I5",
                detail: format!("order {order_id} is charged {num_charges} times"),
            });
        }
        if !paid.contains(order_id) && violations.len() < 40 {
            violations.push(Violation {
                invariant: "I6",
                detail: format!("order {order_id} is charged but not paid"),
            });
        }
    }
    for order_id in paid
        .iter()
        .filter(|id| !charges_per_order.contains_key(id))
        .take(20)
    {
        violations.push(Violation {
            invariant: "I6",
            detail: format!("order {order_id} is paid but the gateway holds no charge for it"),
        });
    }
    Money {
        charged,
        paid_orders: paid.len(),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ServerOrder;

    fn order(id: i64, status: &str) -> ServerOrder {
        ServerOrder {
            id,
            user_id: 1,
            quantity: 1,
            status: status.into(),
            idempotency_key: None,
        }
    }

    fn view(orders: Vec<ServerOrder>) -> ServerDrop {
        ServerDrop {
            item_id: 1,
            strategy: "actor".into(),
            total_units: 10,
            per_user_limit: 1,
            available: None,
            outbox_backlog: None,
            orders,
        }
    }

    fn charge(order_id: i64, payment_id: i64, status: &str) -> Value {
        json!({"provider": "toss", "pg_order_id": format!("hurry-{order_id}-{payment_id}"),
               "status": status, "amount": 100, "refunded_amount": 0})
    }

    #[test]
    fn charges_that_match_the_paid_orders_pass() {
        let charges = json!({"charges": [charge(1, 10, "paid"), charge(2, 11, "failed"),
                                          charge(3, 12, "refunded"), charge(99, 13, "paid")]});
        let view = view(vec![
            order(1, "paid"),
            order(2, "payment_failed"),
            order(3, "expired"),
        ]);
        let money = compare(&charges, &view, &BTreeSet::from([1, 2, 3]));
        assert!(money.violations.is_empty(), "{:?}", money.violations);
        assert_eq!((money.paid_orders, money.charged["toss"]), (1, 1));
    }

    #[test]
    fn a_double_charge_a_charge_without_order_and_an_order_without_charge_are_each_named() {
        let charges = json!({"charges": [charge(1, 10, "paid"), charge(1, 11, "paid"),
                                          charge(2, 12, "paid")]});
        let view = view(vec![
            order(1, "paid"),
            order(2, "expired"),
            order(3, "delivered"),
        ]);
        let money = compare(&charges, &view, &BTreeSet::from([1, 2, 3]));
        let details: Vec<&str> = money.violations.iter().map(|v| v.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                "order 1 is charged 2 times",
                "order 2 is charged but not paid",
                "order 3 is paid but the gateway holds no charge for it",
            ]
        );
    }

    #[test]
    fn the_order_of_a_gateway_order_id_is_read_back() {
        assert_eq!(order_of("hurry-4711-12"), Some(4711));
        assert_eq!(order_of("other-1-2"), None);
        assert_eq!(order_of("hurry-x-2"), None);
    }
}
