//! `hurry-loadtest`: runs a small drop against a live Hurry Up Order server and reports what it
//! saw. This is the first cut: closed-model load (each shopper task sends its next purchase
//! after the previous answer), plain percentiles and a count audit. The full harness (open
//! model, HDR histograms, reports, strategy comparison) builds on it.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "hurry-loadtest",
    about = "Run a drop against a Hurry Up Order server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision a seller, a drop and shoppers, then have every shopper try to buy.
    Drop(DropArgs),
}

#[derive(clap::Args)]
struct DropArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Email of an admin (the server's HURRY__ADMIN__EMAIL).
    #[arg(long, env = "HURRY__ADMIN__EMAIL")]
    admin_email: String,
    /// Password of that admin.
    #[arg(long, env = "HURRY__ADMIN__PASSWORD")]
    admin_password: String,
    /// Number of synthetic shoppers.
    #[arg(long, default_value_t = 200)]
    shoppers: usize,
    /// Units in the drop.
    #[arg(long, default_value_t = 100)]
    units: i64,
    /// Purchase attempts per shopper.
    #[arg(long, default_value_t = 2)]
    attempts: usize,
    /// Most requests in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Drop(args) => run_drop(args).await,
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .client
            .post(format!("{}/api/v1{path}", self.base))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .call(
                "/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await?;
        if status == 403 && body["error"]["code"] == "email_not_verified" {
            bail!(
                "login of {email} needs a verified email: start the server with \
                 HURRY__AUTH__REQUIRE_EMAIL_VERIFICATION=false for a load test"
            );
        }
        if status != 200 {
            bail!("login of {email} answered {status}: {body}");
        }
        Ok(body["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned())
    }

    async fn shopper(&self, email: &str) -> anyhow::Result<String> {
        let password = "loadtest-password";
        let (status, body) = self
            .call(
                "/auth/signup",
                None,
                json!({"email": email, "password": password, "name": "shopper"}),
            )
            .await?;
        if status != 201 && status != 409 {
            bail!("signup of {email} answered {status}: {body}");
        }
        self.login(email, password).await
    }
}

async fn run_drop(args: DropArgs) -> anyhow::Result<()> {
    let api = Api {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: args.target.trim_end_matches('/').to_owned(),
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let admin = api.login(&args.admin_email, &args.admin_password).await?;
    let now = drop_window();
    let (status, item) = api
        .call(
            "/items",
            Some(&admin),
            json!({"name": format!("loadtest {run}"), "price": 1000, "stock": args.units,
                   "drop": {"opens_at": now.0, "closes_at": now.1, "per_user_limit": 1}}),
        )
        .await?;
    if status != 201 {
        bail!("creating the drop answered {status}: {item}");
    }
    let item_id = item["id"].as_i64().context("no item id")?;
    eprintln!(
        "drop {item_id}: {} units; provisioning {} shoppers",
        args.units, args.shoppers
    );
    let api = &api;
    let tokens: Vec<String> = futures::stream::iter(0..args.shoppers)
        .map(|index| {
            let email = format!("shopper{index}-{run}@loadtest.invalid");
            async move { api.shopper(&email).await }
        })
        .buffer_unordered(args.connections)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    let attempts: Vec<(usize, &String)> = (0..args.attempts)
        .flat_map(|_| tokens.iter().enumerate())
        .collect();
    let started = Instant::now();
    let outcomes: Vec<(usize, u16, Duration, Value)> = futures::stream::iter(attempts)
        .map(|(shopper, token)| async move {
            let sent = Instant::now();
            let path = format!("/items/{item_id}/purchase");
            let (status, body) = api
                .call(&path, Some(token), json!({"quantity": 1}))
                .await
                .unwrap_or((0, Value::Null));
            (shopper, status, sent.elapsed(), body)
        })
        .buffer_unordered(args.connections)
        .collect()
        .await;
    let elapsed = started.elapsed();
    report(&outcomes, elapsed, args.units)
}

/// Opening a minute ago, closing in an hour.
fn drop_window() -> (String, String) {
    let now = chrono::Utc::now();
    (
        (now - chrono::Duration::minutes(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    )
}

fn report(
    outcomes: &[(usize, u16, Duration, Value)],
    elapsed: Duration,
    units: i64,
) -> anyhow::Result<()> {
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::with_capacity(outcomes.len());
    let mut buyers = HashSet::new();
    for (shopper, status, latency, _) in outcomes {
        *by_status.entry(*status).or_default() += 1;
        latencies.push(*latency);
        if *status == 201 && !buyers.insert(*shopper) {
            bail!("AUDIT FAILED: shopper {shopper} bought twice with a per-user limit of 1");
        }
    }
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "requests: {} in {:.2?} ({:.0}/s)",
        outcomes.len(),
        elapsed,
        outcomes.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {:.2?} p90 {:.2?} p99 {:.2?} max {:.2?}",
        percentile(0.5),
        percentile(0.9),
        percentile(0.99),
        percentile(1.0)
    );
    println!("outcomes by status: {by_status:?}");
    let sold = by_status.get(&201).copied().unwrap_or(0) as i64;
    if sold > units {
        bail!("AUDIT FAILED: {sold} units acknowledged of {units}");
    }
    println!("audit: {sold} of {units} units acknowledged, no shopper twice");
    Ok(())
}
