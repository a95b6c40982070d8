//! Sends the attempts, at their planned arrival times (open model) or each as soon as its
//! connection's last one is answered (closed model), and collects the answers.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::conn::{self, Pool};
use crate::schedule::{Arrival, ClosedLoop, KeyPolicy, Workload};
use crate::stats::{self, Outcome};

/// What one attempt needs to know, shared by all of them.
pub struct Load {
    /// A keep-alive pool per target, with the purchase path.
    pub targets: Vec<(Pool, String)>,
    /// Bearer header value of each shopper.
    pub tokens: Vec<String>,
    pub quantity: i64,
    /// Idempotency keys are `{run}-{request}`.
    pub run: String,
    pub keys: KeyPolicy,
    /// Most attempts in flight (and so most connections).
    pub connections: usize,
    pub show_progress: bool,
}

#[derive(Deserialize)]
struct Answer {
    id: Option<i64>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
}

/// Runs the workload; answers in completion order.
pub async fn run(load: Load, workload: Workload) -> Vec<Outcome> {
    let load = Arc::new(load);
    let body = bytes_of_quantity(load.quantity);
    let (sender, receiver) = mpsc::unbounded_channel();
    let total = match &workload {
        Workload::Open(arrivals) => Some(arrivals.len()),
        Workload::Closed(_) => None,
    };
    let collector = tokio::spawn(collect(receiver, total, load.show_progress));
    let connections = load.connections;
    let send = move |arrival: Arrival| {
        let (load, body) = (load.clone(), body.clone());
        async move { attempt(&load, &arrival, body).await }
    };
    match workload {
        Workload::Open(arrivals) => open_loop(arrivals, connections, send, sender).await,
        Workload::Closed(plan) => closed_loop(plan, connections, send, sender).await,
    }
    collector.await.unwrap_or_default()
}

/// An arrival's answer, with its latency from the planned send time (the open model) or from
/// its sending (the closed one).
pub type Answered<T> = (Arrival, Duration, T);

/// The open model: sends each arrival at its planned time whether or not earlier ones were
/// answered, at most `connections` in flight; answers go to `sink` timed from the planned send
/// time. This loop keeps the time: it hands each arrival, once due, to `connections` workers
/// through a queue. A late arrival (every worker was busy: the server held every connection,
/// or this process stalled) waits in the queue and is still timed from its planned time, so
/// coordinated omission cannot hide a stall. No task per attempt: in a burst ~90,000 attempts
/// are due before the first are answered, and a task plus a semaphore wait each cost the CPU
/// the server shares.
pub async fn open_loop<T, F, Fut>(
    arrivals: Vec<Arrival>,
    connections: usize,
    send: F,
    sink: mpsc::UnboundedSender<Answered<T>>,
) where
    F: Fn(Arrival) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (due_sender, due) = flume::unbounded::<Arrival>();
    let send = Arc::new(send);
    // A short head start so the first arrivals are not late before the loop begins.
    let start = TokioInstant::now() + Duration::from_millis(20);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1).min(arrivals.len()) {
        let (due, send, sink) = (due.clone(), send.clone(), sink.clone());
        workers.spawn(async move {
            while let Ok(arrival) = due.recv_async().await {
                // Late: timed from the planned time. Early (by at most the slack): timed from
                // now, when it leaves.
                let from = (start + arrival.at).min(TokioInstant::now());
                let answer = send(arrival).await;
                let latency = TokioInstant::now().saturating_duration_since(from);
                let _ = sink.send((arrival, latency, answer));
            }
        });
    }
    for arrival in arrivals {
        let due = start + arrival.at;
        let wake = due.checked_sub(TIMER_SLACK).unwrap_or(due);
        if wake > TokioInstant::now() {
            tokio::time::sleep_until(wake).await;
        }
        if due_sender.send(arrival).is_err() {
            break; // no worker left (they only end when this sender is dropped)
        }
    }
    drop(due_sender);
    while workers.join_next().await.is_some() {}
}

/// The closed model: `connections` workers, each sending its next attempt as soon as its last
/// is answered, starting new requests until `plan.duration` has passed; a request's retry goes
/// out on the same connection right after the original's answer, even past the duration, so
/// the retry share holds. Requests are numbered in the order they start, across the workers.
/// Each arrival's `at` is its send time from the start and its latency runs from then: here
/// the server sets the pace, so there is no planned time to be late for.
pub async fn closed_loop<T, F, Fut>(
    plan: ClosedLoop,
    connections: usize,
    send: F,
    sink: mpsc::UnboundedSender<Answered<T>>,
) where
    F: Fn(Arrival) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let send = Arc::new(send);
    let next_request = Arc::new(AtomicUsize::new(0));
    let start = TokioInstant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (send, sink, next_request) = (send.clone(), sink.clone(), next_request.clone());
        workers.spawn(async move {
            while start.elapsed() < plan.duration {
                let request = next_request.fetch_add(1, Ordering::Relaxed);
                for planned in plan.attempts(request) {
                    let sent = TokioInstant::now();
                    let arrival = Arrival {
                        at: sent - start,
                        ..planned
                    };
                    let answer = send(arrival).await;
                    let _ = sink.send((arrival, sent.elapsed(), answer));
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// tokio's timers fire on whole milliseconds and round a deadline up, so waking at an
/// arrival's planned time would send it up to 1 ms late and charge that to the server (at
/// 20,000/s against `/healthz` the harness reported p50 0.88 ms where oha saw 0.10 ms). The
/// loop wakes this much early instead, and an attempt sent early is timed from its sending.
const TIMER_SLACK: Duration = Duration::from_millis(1);

fn bytes_of_quantity(quantity: i64) -> bytes::Bytes {
    bytes::Bytes::from(format!("{{\"quantity\":{quantity}}}"))
}

/// Sends one purchase; `scheduled` and `latency` are filled in by the caller.
async fn attempt(load: &Load, arrival: &Arrival, body: bytes::Bytes) -> Outcome {
    let (pool, path) = &load.targets[arrival.request % load.targets.len()];
    let token = &load.tokens[arrival.shopper % load.tokens.len()];
    let mut outcome = Outcome {
        request: arrival.request,
        shopper: arrival.shopper,
        retry: arrival.retry,
        scheduled: Duration::ZERO,
        latency: Duration::ZERO,
        status: 0,
        code: None,
        order_id: None,
        quantity: load.quantity,
    };
    let mut request = conn::request(http::Method::POST, path)
        .header(http::header::AUTHORIZATION, token)
        .header(http::header::CONTENT_TYPE, "application/json");
    if load.keys.keyed(arrival) {
        request = request.header(
            "idempotency-key",
            format!("{}-{}", load.run, arrival.request),
        );
    }
    let request = request.body(body.into()).expect("valid request");
    let Ok((status, bytes)) = pool.send(request).await else {
        outcome.code = Some("transport".to_owned());
        return outcome;
    };
    outcome.status = status.as_u16();
    let status = outcome.status;
    if let Ok(answer) = serde_json::from_slice::<Answer>(&bytes) {
        outcome.order_id = answer.id.filter(|_| status == 201);
        outcome.code = answer.error.map(|error| error.code);
    }
    outcome
}

/// Gathers the answers, keeping the progress bar's rate, p99 and units sold current; `total`
/// is the number of attempts when it is known in advance (not in a closed loop).
async fn collect(
    mut receiver: mpsc::UnboundedReceiver<Answered<Outcome>>,
    total: Option<usize>,
    show_progress: bool,
) -> Vec<Outcome> {
    let bar = progress_bar(total, show_progress);
    let mut outcomes = Vec::with_capacity(total.unwrap_or(1 << 16));
    let mut window = stats::histogram();
    let mut window_start = Instant::now();
    let mut window_count = 0u64;
    let mut sold = 0i64;
    while let Some((arrival, latency, outcome)) = receiver.recv().await {
        let outcome = Outcome {
            latency,
            scheduled: arrival.at,
            ..outcome
        };
        stats::record(&mut window, outcome.latency);
        window_count += 1;
        if outcome.status == 201 && !outcome.retry {
            sold += outcome.quantity;
        }
        outcomes.push(outcome);
        bar.inc(1);
        let elapsed = window_start.elapsed();
        if elapsed >= Duration::from_millis(500) {
            bar.set_message(format!(
                "{:.0}/s p99 {:.2} ms sold {sold}",
                window_count as f64 / elapsed.as_secs_f64(),
                window.value_at_quantile(0.99) as f64 / 1_000.0
            ));
            window.reset();
            window_count = 0;
            window_start = Instant::now();
        }
    }
    bar.finish_and_clear();
    outcomes
}

/// A bar for `total` attempts, or a counter when the total is not known in advance.
fn progress_bar(total: Option<usize>, show: bool) -> ProgressBar {
    let (bar, template) = match (show, total) {
        (false, _) => return ProgressBar::hidden(),
        (true, Some(total)) => (
            ProgressBar::new(total as u64),
            "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
        ),
        (true, None) => (ProgressBar::no_length(), "{elapsed_precise} {pos} {msg}"),
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(request: usize, at: Duration) -> Arrival {
        Arrival {
            at,
            shopper: request,
            request,
            retry: false,
            repeated: false,
        }
    }

    /// Runs `arrivals` through the open loop (paused clock) with answers that take `service`
    /// each; the latencies by request.
    async fn latencies(arrivals: Vec<Arrival>, connections: usize, service: Duration) -> Vec<u128> {
        let (sink, mut answers) = mpsc::unbounded_channel();
        let count = arrivals.len();
        let send = move |_| async move { tokio::time::sleep(service).await };
        open_loop(arrivals, connections, send, sink).await;
        let mut out = vec![0; count];
        for _ in 0..count {
            let (arrival, latency, ()) = answers.recv().await.expect("every answer");
            out[arrival.request] = latency.as_micros();
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_tick_is_not_charged_to_the_server() {
        // Planned 300 µs past a millisecond tick: waking for it would take the next tick.
        let arrivals = vec![arrival(0, Duration::from_micros(10_300))];

        let measured = latencies(arrivals, 4, Duration::from_millis(2)).await;

        assert_eq!(measured, [2_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_connection_counts_from_the_planned_time() {
        // One connection, answers take 5 ms: the first leaves 1 ms early (the timer slack) and
        // is answered at 14 ms; the second, planned for 11 ms, leaves then: 8 ms from its plan.
        let arrivals = vec![
            arrival(0, Duration::from_millis(10)),
            arrival(1, Duration::from_millis(11)),
        ];

        let measured = latencies(arrivals, 1, Duration::from_millis(5)).await;

        assert_eq!(measured, [5_000, 8_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn late_arrivals_leave_in_planned_order_as_connections_free_up() {
        // Two connections, five attempts planned for 10 ms, answers take 5 ms each: two leave
        // at 9 ms (the timer slack), two at 14 ms and one at 19 ms, timed from 10 ms.
        let arrivals = (0..5)
            .map(|n| arrival(n, Duration::from_millis(10)))
            .collect();

        let measured = latencies(arrivals, 2, Duration::from_millis(5)).await;

        assert_eq!(measured, [5_000, 5_000, 9_000, 9_000, 14_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_waits_for_the_planned_time_not_for_the_others() {
        // Attempts 20 ms apart, answers take 30 ms: with three connections none waits.
        let arrivals = (0..6)
            .map(|n| arrival(n, Duration::from_millis(20 * n as u64)))
            .collect();

        let measured = latencies(arrivals, 3, Duration::from_millis(30)).await;

        assert_eq!(measured, [30_000; 6]);
    }

    /// Runs a closed loop (paused clock) of `connections` for `duration` with answers that
    /// take `service` each; (request, retry, send time in ms, latency in ms), by send time.
    async fn closed(
        connections: usize,
        duration: Duration,
        retry_share: f64,
        service: Duration,
    ) -> Vec<(usize, bool, u128, u128)> {
        let (sink, mut answers) = mpsc::unbounded_channel();
        let plan = ClosedLoop {
            shoppers: 10,
            duration,
            retry_share,
        };
        let send = move |_| async move { tokio::time::sleep(service).await };
        closed_loop(plan, connections, send, sink).await;
        let mut out = Vec::new();
        while let Some((arrival, latency, ())) = answers.recv().await {
            out.push((
                arrival.request,
                arrival.retry,
                arrival.at.as_millis(),
                latency.as_millis(),
            ));
        }
        out.sort_by_key(|&(request, retry, at, _)| (at, request, retry));
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_connection_sends_the_next_attempt_when_the_last_is_answered() {
        let sent = closed(1, Duration::from_millis(20), 0.0, Duration::from_millis(5)).await;

        assert_eq!(
            sent,
            [
                (0, false, 0, 5),
                (1, false, 5, 5),
                (2, false, 10, 5),
                (3, false, 15, 5)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn closed_connections_share_the_request_numbers_and_stop_at_the_duration() {
        let sent = closed(3, Duration::from_millis(50), 0.0, Duration::from_millis(10)).await;

        // Three connections, five rounds of 10 ms each: 15 requests, each once.
        assert_eq!(sent.len(), 15);
        let mut requests: Vec<usize> = sent.iter().map(|s| s.0).collect();
        requests.sort_unstable();
        assert_eq!(requests, (0..15).collect::<Vec<_>>());
        for round in 0..5 {
            let at = 10 * round as u128;
            assert_eq!(sent.iter().filter(|s| s.2 == at).count(), 3, "at {at} ms");
        }
        assert!(sent.iter().all(|s| s.3 == 10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_retry_follows_its_answer_even_past_the_duration() {
        // Every other request is sent twice; request 1 starts at 5 ms, its retry at 10 ms,
        // after the 8 ms the loop starts requests for.
        let sent = closed(1, Duration::from_millis(8), 0.5, Duration::from_millis(5)).await;

        assert_eq!(sent, [(0, false, 0, 5), (1, false, 5, 5), (1, true, 10, 5)]);
    }
}
