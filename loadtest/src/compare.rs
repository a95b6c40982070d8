//! `hurry-loadtest compare`: the same drop against one server per stock strategy, each
//! audited, and a ratio table.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::bail;
use serde::Serialize;

use crate::drop_run::{self, DropArgs};
use crate::report::Report;
use crate::server::{self, Server, ServerSpec};

/// The strategies, in the order they run.
pub const STRATEGIES: [&str; 3] = ["actor", "redis_lua", "pg_row"];

#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub drop: DropArgs,
    /// Strategies to compare (the first is the baseline of the ratios).
    #[arg(long, value_delimiter = ',', default_value = "actor,redis_lua,pg_row")]
    pub strategies: Vec<String>,
    /// Already running servers instead of starting them, as STRATEGY=URL (repeatable).
    #[arg(long = "server", value_name = "STRATEGY=URL")]
    pub servers: Vec<String>,
    /// The `hurry` binary to start (default: beside this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Database of the started servers (created when missing); each run makes its own drop.
    #[arg(
        long,
        env = "LOADTEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/hurry_compare"
    )]
    pub database_url: String,
    /// Redis of the started servers (every strategy runs in cluster mode, alike).
    #[arg(
        long,
        env = "LOADTEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Prefix of the started servers' Redis keys (each run adds `RUN:STRATEGY:`).
    #[arg(long, default_value = "loadtest:")]
    pub redis_prefix: String,
}

/// One strategy's row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub strategy: String,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub units_sold: i64,
    pub violations: usize,
    /// Baseline throughput over this strategy's.
    pub baseline_ratio: f64,
}

/// Runs the comparison; the reports of every strategy, in order.
pub async fn run(args: &CompareArgs) -> anyhow::Result<Vec<(String, Report)>> {
    for strategy in &args.strategies {
        if !STRATEGIES.contains(&strategy.as_str()) {
            bail!(
                "unknown strategy {strategy}: one of {}",
                STRATEGIES.join(", ")
            );
        }
    }
    let given = given_servers(&args.servers)?;
    if given.is_empty() {
        server::ensure_database(&args.database_url).await?;
    }
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut reports = Vec::new();
    for strategy in &args.strategies {
        let mut drop = args.drop.clone();
        drop.out = args.drop.out.join(strategy);
        let started = match given.iter().find(|(name, _)| name == strategy) {
            Some((_, url)) => {
                drop.target = vec![url.clone()];
                None
            }
            None => {
                let spec = ServerSpec {
                    bin: args.server_bin.clone().unwrap_or_else(server::default_bin),
                    strategy: strategy.clone(),
                    database_url: args.database_url.clone(),
                    redis_url: args.redis_url.clone(),
                    redis_prefix: format!("{}{run}:{strategy}:", args.redis_prefix),
                    admin_email: drop.admin_email.clone(),
                    admin_password: drop.admin_password.clone(),
                    log: server::log_path(&drop.out, "server"),
                };
                let server = Server::start(&spec).await?;
                drop.target = vec![server.base.clone()];
                Some(server)
            }
        };
        if !drop.quiet {
            eprintln!("== {strategy} at {}", drop.target[0]);
        }
        let report = drop_run::run(&drop).await;
        if let Some(server) = started {
            server.stop().await;
        }
        let report = report?;
        if report.config.strategy.as_deref() != Some(strategy) {
            bail!(
                "the server at {} runs strategy {:?}, not {strategy}",
                drop.target[0],
                report.config.strategy
            );
        }
        report.write(&drop.out)?;
        print!("{}", report.text());
        reports.push((strategy.clone(), report));
    }
    Ok(reports)
}

fn given_servers(servers: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    servers
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, url)) => Ok((name.to_owned(), url.to_owned())),
            None => bail!("--server takes STRATEGY=URL, got {entry}"),
        })
        .collect()
}

/// The table's rows; ratios against the first report.
pub fn rows(reports: &[(String, Report)]) -> Vec<Row> {
    let baseline = reports
        .first()
        .map(|(_, r)| r.summary.throughput_rps)
        .unwrap_or(0.0);
    reports
        .iter()
        .map(|(strategy, report)| Row {
            strategy: strategy.clone(),
            throughput_rps: report.summary.throughput_rps,
            p50_ms: report.summary.latency.p50,
            p99_ms: report.summary.latency.p99,
            units_sold: report.audit.sold,
            violations: report.audit.violations.len(),
            baseline_ratio: if report.summary.throughput_rps > 0.0 {
                baseline / report.summary.throughput_rps
            } else {
                f64::INFINITY
            },
        })
        .collect()
}

/// The ratio table as text.
pub fn table(rows: &[Row]) -> String {
    let baseline = rows.first().map(|r| r.strategy.as_str()).unwrap_or("-");
    let mut out = format!(
        "{:<10} {:>12} {:>9} {:>9} {:>7} {:>10} {:>14}\n",
        "strategy",
        "attempts/s",
        "p50 ms",
        "p99 ms",
        "sold",
        "violations",
        format!("{baseline} ÷ this")
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<10} {:>12.0} {:>9.2} {:>9.2} {:>7} {:>10} {:>13.2}x",
            row.strategy,
            row.throughput_rps,
            row.p50_ms,
            row.p99_ms,
            row.units_sold,
            row.violations,
            row.baseline_ratio
        );
    }
    out
}
