use std::time::Duration;

use super::*;

/// Shopper `i` is user `100 + i`.
fn users() -> Vec<i64> {
    (0..10).map(|i| 100 + i).collect()
}

fn answer(request: usize, shopper: usize, status: u16, order_id: Option<i64>) -> Outcome {
    Outcome {
        request,
        shopper,
        retry: false,
        scheduled: Duration::from_millis(request as u64),
        latency: Duration::from_millis(1),
        status,
        code: (status == 409).then(|| "sold_out".to_owned()),
        order_id,
        quantity: 1,
    }
}

fn order(id: i64, user_id: i64, key: &str) -> ServerOrder {
    ServerOrder {
        id,
        user_id,
        quantity: 1,
        status: "pending_payment".to_owned(),
        idempotency_key: Some(key.to_owned()),
    }
}

/// A clean run: 3 units, shoppers 0..3 bought, shopper 3 got sold out, request 0 retried.
fn clean() -> (Vec<Outcome>, ServerDrop) {
    let mut seen = vec![
        answer(0, 0, 201, Some(1)),
        answer(1, 1, 201, Some(2)),
        answer(2, 2, 201, Some(3)),
        answer(3, 3, 409, None),
    ];
    let mut retry = answer(0, 0, 201, Some(1));
    retry.retry = true;
    seen.push(retry);
    let server = ServerDrop {
        item_id: 7,
        strategy: "actor".to_owned(),
        total_units: 3,
        per_user_limit: 1,
        available: Some(0),
        outbox_backlog: Some(0),
        orders: vec![
            order(1, 100, "k0"),
            order(2, 101, "k1"),
            order(3, 102, "k2"),
        ],
    };
    (seen, server)
}

fn broken(seen: &[Outcome], server: &ServerDrop) -> Vec<&'static str> {
    let report = audit(seen, &users(), server, true);
    assert!(!report.passed(), "the audit missed a violation");
    report.violations.iter().map(|v| v.invariant).collect()
}

#[test]
fn a_clean_run_passes_every_check() {
    let (seen, server) = clean();
    let report = audit(&seen, &users(), &server, true);
    assert!(report.passed(), "{:?}", report.violations);
    assert_eq!(report.sold, 3);
    assert_eq!(report.acknowledged, 3);
    assert_eq!(report.retried_pairs, 1);
    assert!(report.checked_i3);
}

#[test]
fn oversold_store_breaks_i1() {
    let (seen, mut server) = clean();
    server.orders.push(order(4, 103, "k3"));
    server.available = Some(-1);
    assert!(broken(&seen, &server).contains(&"I1"));
}

#[test]
fn more_acknowledgements_than_units_break_i1() {
    let (mut seen, mut server) = clean();
    seen[3] = answer(3, 3, 201, Some(4));
    server.total_units = 3;
    let found = broken(&seen, &server);
    assert!(found.contains(&"I1"));
    // Order 4 was also never stored.
    assert!(found.contains(&"I2"));
}

#[test]
fn an_acknowledged_order_missing_from_the_store_breaks_i2() {
    let (seen, mut server) = clean();
    server.orders.remove(1);
    server.available = Some(1);
    assert_eq!(broken(&seen, &server), vec!["I2"]);
}

#[test]
fn an_order_stored_for_another_user_breaks_i2() {
    let (seen, mut server) = clean();
    server.orders[0].user_id = 109;
    assert_eq!(broken(&seen, &server), vec!["I2"]);
}

#[test]
fn a_user_over_the_limit_breaks_i4() {
    let (seen, mut server) = clean();
    server.total_units = 4;
    server.orders.push(order(4, 100, "k9"));
    assert_eq!(broken(&seen, &server), vec!["I4"]);
}

#[test]
fn a_retry_with_another_answer_breaks_i5() {
    let (mut seen, server) = clean();
    seen[4].status = 409;
    seen[4].code = Some("sold_out".to_owned());
    seen[4].order_id = None;
    assert_eq!(broken(&seen, &server), vec!["I5"]);
    // A retry that made a second order: also an acknowledgement the store lacks.
    let (mut seen, server) = clean();
    seen[4].order_id = Some(99);
    let found = broken(&seen, &server);
    assert!(found.contains(&"I5") && found.contains(&"I2"), "{found:?}");
}

#[test]
fn a_retry_without_an_answer_is_not_a_violation() {
    let (mut seen, server) = clean();
    seen[4].status = 0;
    seen[4].order_id = None;
    assert!(audit(&seen, &users(), &server, true).passed());
}

#[test]
fn one_key_with_two_orders_breaks_i5() {
    let (seen, mut server) = clean();
    server.total_units = 4;
    server.per_user_limit = 2;
    server.orders.push(order(4, 100, "k0"));
    assert_eq!(broken(&seen, &server), vec!["I5"]);
}

#[test]
fn leaked_units_break_i3_only_when_quiescent() {
    let (seen, mut server) = clean();
    server.total_units = 5;
    server.available = Some(1);
    assert_eq!(broken(&seen, &server), vec!["I3"]);
    let report = audit(&seen, &users(), &server, false);
    assert!(report.passed());
    assert!(!report.checked_i3);
}

#[test]
fn cancelled_orders_do_not_count_as_held() {
    let (seen, mut server) = clean();
    server.orders.push(ServerOrder {
        status: "cancelled".to_owned(),
        ..order(4, 100, "k8")
    });
    assert!(audit(&seen, &users(), &server, true).passed());
}
