//! `hurry-loadtest http`: GET one plain URL, to check the instrument against wrk or oha.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::conn::{self, Pool};
use crate::runner::{closed_loop, open_loop};
use crate::schedule::{ArrivalModel, ClosedLoop, Plan};
use crate::stats::{self, Percentiles};

#[derive(Debug, Clone, clap::Args)]
pub struct PlainArgs {
    /// The URL to GET.
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    pub url: String,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Requests per second (open model); without it each connection sends its next request
    /// when the last is answered (closed model, as wrk does).
    #[arg(long)]
    pub rate: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct PlainResult {
    pub requests: u64,
    pub errors: u64,
    pub throughput_rps: f64,
    pub latency: Percentiles,
}

pub async fn run(args: &PlainArgs) -> anyhow::Result<PlainResult> {
    let pool = Pool::new(&args.url)?;
    let path = args
        .url
        .parse::<http::Uri>()?
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let target = Target {
        pool,
        path: path.into(),
    };
    let duration = Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let results = gets(target, args.connections, args.rate, duration).await;
    let elapsed = started.elapsed();
    let mut histogram = stats::histogram();
    let mut errors = 0;
    for (latency, ok) in &results {
        stats::record(&mut histogram, *latency);
        errors += u64::from(!ok);
    }
    Ok(PlainResult {
        requests: results.len() as u64,
        errors,
        throughput_rps: results.len() as f64 / elapsed.as_secs_f64(),
        latency: Percentiles::of(&histogram),
    })
}

/// Where the GETs go.
#[derive(Clone)]
struct Target {
    pool: Pool,
    path: Arc<str>,
}

async fn get(target: Target) -> bool {
    let request = conn::request(http::Method::GET, &target.path)
        .body(Default::default())
        .expect("valid request");
    matches!(target.pool.send(request).await, Ok((status, _)) if status.is_success())
}

/// GETs the target for `duration` over `connections`: at `rate` per second (open model) or,
/// without one, each connection again as soon as it is answered (closed model, as wrk does);
/// the latency and success of each.
async fn gets(
    target: Target,
    connections: usize,
    rate: Option<f64>,
    duration: Duration,
) -> Vec<(Duration, bool)> {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let send = move |_| get(target.clone());
    match rate {
        None => {
            let plan = ClosedLoop {
                shoppers: 1,
                duration,
                retry_share: 0.0,
            };
            closed_loop(plan, connections, send, sender).await;
        }
        Some(rate) => {
            let plan = Plan {
                model: ArrivalModel::Constant,
                requests: (rate * duration.as_secs_f64()).round() as usize,
                shoppers: 1,
                duration,
                retry_share: 0.0,
                retry_after: Duration::ZERO,
                burst_share: 0.0,
            };
            open_loop(plan.arrivals(), connections, send, sender).await;
        }
    }
    let mut results = Vec::new();
    while let Some((_, latency, ok)) = receiver.recv().await {
        results.push((latency, ok));
    }
    results
}
