//! `hurry-loadtest drop`: provision, load, audit, report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use crate::audit::{self, AuditReport};
use crate::client::{http_client, Api};
use crate::conn::Pool;
use crate::cpu;
use crate::report::{Report, RunConfig};
use crate::runner::{self, Load};
use crate::schedule::{ArrivalModel, ClosedLoop, KeyPolicy, Plan, Workload};
use crate::stats::{Outcome, Summary};

/// The drop and the load to put on it.
#[derive(Debug, Clone, clap::Args)]
pub struct DropArgs {
    /// Base URL of the server; several, comma-separated, share the load (cluster nodes).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    pub target: Vec<String>,
    /// Email of an admin of the server (its HURRY__ADMIN__EMAIL).
    #[arg(
        long,
        env = "HURRY__ADMIN__EMAIL",
        default_value = "admin@loadtest.invalid"
    )]
    pub admin_email: String,
    /// That admin's password.
    #[arg(
        long,
        env = "HURRY__ADMIN__PASSWORD",
        default_value = "loadtest-admin-password",
        hide_env_values = true
    )]
    pub admin_password: String,
    /// Synthetic shoppers (provisioned through the admin API).
    #[arg(long, default_value_t = 1_000)]
    pub shoppers: usize,
    /// Units in the drop.
    #[arg(long, default_value_t = 100)]
    pub units: i64,
    /// Most units one shopper may hold.
    #[arg(long, default_value_t = 1)]
    pub per_user_limit: i64,
    /// Units per purchase attempt.
    #[arg(long, default_value_t = 1)]
    pub quantity: i64,
    /// How attempts arrive: planned (`constant`, `ramp`, `burst`) or, `closed`, each
    /// connection's next as soon as its last is answered, going round the shoppers.
    #[arg(long, value_enum, default_value_t = ArrivalModel::Burst)]
    pub arrival: ArrivalModel,
    /// Attempts per second on average (retries on top); default: every shopper once over the
    /// duration. Not with `--arrival closed`, where the server sets the pace.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds over which attempts arrive (closed: over which new ones start).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Most attempts in flight: the keep-alive connections to each run.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Share of attempts sent again with the same Idempotency-Key.
    #[arg(long, default_value_t = 0.02)]
    pub retry_share: f64,
    /// Which attempts carry an Idempotency-Key (each request its own): `all` (a careful
    /// client) or `retried` (only the ones sent twice).
    #[arg(long, value_enum, default_value_t = KeyPolicy::All)]
    pub keys: KeyPolicy,
    /// Milliseconds after its original that a retry is sent (closed: right after its answer).
    #[arg(long, default_value_t = 20)]
    pub retry_after_ms: u64,
    /// With `--arrival burst`: share of attempts in the first second.
    #[arg(long, default_value_t = 0.5)]
    pub burst_share: f64,
    /// Longest wait, in seconds, for the server to publish its pending events (the shoppers'
    /// signups) before the load starts; 0 starts at once.
    #[arg(long, default_value_t = 120.0)]
    pub settle_secs: f64,
    /// Where report.json and report.html go.
    #[arg(long, default_value = "loadtest-report")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl DropArgs {
    fn check(&self) -> anyhow::Result<()> {
        if self.shoppers == 0 || self.units < 0 || self.per_user_limit < 1 || self.quantity < 1 {
            bail!("--shoppers, --per-user-limit and --quantity must be at least 1, --units at least 0");
        }
        let positive = |value: f64| value.is_finite() && value > 0.0;
        if !positive(self.duration) || self.rate.is_some_and(|rate| !positive(rate)) {
            bail!("--duration and --rate must be positive");
        }
        if !(0.0..=1.0).contains(&self.retry_share) || !(0.0..=1.0).contains(&self.burst_share) {
            bail!("--retry-share and --burst-share are between 0 and 1");
        }
        if self.arrival == ArrivalModel::Closed && self.rate.is_some() {
            bail!("--rate plans open arrivals: a closed loop runs as fast as it is answered");
        }
        Ok(())
    }

    fn requests(&self) -> usize {
        match self.rate {
            Some(rate) => (rate * self.duration).round().max(1.0) as usize,
            None => self.shoppers,
        }
    }
}

/// Runs one drop; the report says whether the audit passed.
pub async fn run(args: &DropArgs) -> anyhow::Result<Report> {
    args.check()?;
    let client = http_client(args.connections)?;
    let apis: Vec<Api> = args
        .target
        .iter()
        .map(|base| Api::new(client.clone(), base))
        .collect();
    let api = &apis[0];
    let admin = api
        .admin_token(&args.admin_email, &args.admin_password)
        .await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let duration = Duration::from_secs_f64(args.duration);
    let item = api
        .create_drop(
            &admin,
            &format!("loadtest {run_id}"),
            args.units,
            args.per_user_limit,
            duration + Duration::from_secs(600),
        )
        .await?;
    let provisioning = std::time::Instant::now();
    let shoppers = api.provision(&admin, args.shoppers).await?;
    if !args.quiet {
        eprintln!(
            "drop {}: {} units; {} shoppers provisioned in {:.1?}",
            item.id,
            item.units,
            shoppers.len(),
            provisioning.elapsed()
        );
    }
    settle(api, &admin, item.id, args).await?;
    let workload = if args.arrival == ArrivalModel::Closed {
        Workload::Closed(ClosedLoop {
            shoppers: shoppers.len(),
            duration,
            retry_share: args.retry_share,
        })
    } else {
        let plan = Plan {
            model: args.arrival,
            requests: args.requests(),
            shoppers: shoppers.len(),
            duration,
            retry_share: args.retry_share,
            retry_after: Duration::from_millis(args.retry_after_ms),
            burst_share: args.burst_share,
        };
        Workload::Open(plan.arrivals())
    };
    let targets = apis
        .iter()
        .map(|api| {
            let path = format!("/api/v1/items/{}/purchase", item.id);
            Ok((Pool::new(&api.base)?, path))
        })
        .collect::<anyhow::Result<_>>()?;
    let load = Load {
        targets,
        tokens: shoppers
            .iter()
            .map(|s| format!("Bearer {}", s.access_token))
            .collect(),
        quantity: args.quantity,
        run: run_id,
        keys: args.keys,
        connections: args.connections,
        show_progress: !args.quiet,
    };
    let started_at = chrono::Utc::now().to_rfc3339();
    let before = cpu::snapshot();
    let outcomes = runner::run(load, workload).await;
    let instrument = before
        .zip(cpu::snapshot())
        .map(|(before, after)| cpu::between(&before, &after));
    let user_ids: Vec<i64> = shoppers.iter().map(|s| s.user_id).collect();
    let audit = audit_when_quiet(api, &admin, item.id, &outcomes, &user_ids).await?;
    let summary = Summary::of(&outcomes);
    Ok(Report {
        started_at,
        config: RunConfig {
            targets: args.target.clone(),
            strategy: audit.1,
            item_id: item.id,
            shoppers: shoppers.len(),
            units: args.units,
            per_user_limit: args.per_user_limit,
            quantity: args.quantity,
            arrival: args.arrival,
            // Logical requests: planned, or as many as a closed loop got answered.
            rate: outcomes.iter().filter(|o| !o.retry).count() as f64 / args.duration,
            duration_s: args.duration,
            connections: args.connections,
            retry_share: args.retry_share,
            keys: args.keys,
        },
        summary,
        instrument,
        audit: audit.0,
    })
}

/// Audits once every attempt has its answer. An attempt that got no answer (or a 5xx) may still
/// be settling on the server, so a failing I3 is read again for a few seconds before it counts.
async fn audit_when_quiet(
    api: &Api,
    admin: &str,
    item_id: i64,
    outcomes: &[Outcome],
    user_ids: &[i64],
) -> anyhow::Result<(AuditReport, Option<String>)> {
    let unsettled = outcomes.iter().any(|o| o.status == 0 || o.status >= 500);
    let mut tries = if unsettled { 20 } else { 1 };
    loop {
        let view = api.drop_view(admin, item_id).await?;
        let report = audit::audit(outcomes, user_ids, &view, true);
        tries -= 1;
        let only_i3 = report.violations.iter().all(|v| v.invariant == "I3");
        if report.passed() || !only_i3 || tries == 0 {
            return Ok((report, Some(view.strategy)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits (at most `--settle-secs`) until the server has published every pending event, so the
/// signup events of the shoppers just provisioned are not relayed during the drop, as they
/// would not be in a real one.
async fn settle(api: &Api, admin: &str, item_id: i64, args: &DropArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs_f64(args.settle_secs.max(0.0));
    loop {
        let view = api.drop_view(admin, item_id).await?;
        let backlog = view.outbox_backlog.unwrap_or(0);
        if backlog == 0 {
            if !args.quiet && started.elapsed() > Duration::from_millis(500) {
                eprintln!("events published in {:.1?}", started.elapsed());
            }
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            if !args.quiet {
                eprintln!("starting with {backlog} events not yet published");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
