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
    /// Database of the started servers: each run gets a fresh one named after it with
    /// `_ROUND_STRATEGY` added (created before, dropped after), so every strategy starts from
    /// the same empty store.
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
    /// Rounds: every strategy runs once per round (round `k` starts `k` places further down
    /// the list, so none always runs first); the table shows medians across rounds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
}

/// One strategy's row of the table: medians across its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub strategy: String,
    pub rounds: usize,
    pub throughput_rps: f64,
    /// Lowest and highest throughput of the rounds.
    pub throughput_min: f64,
    pub throughput_max: f64,
    /// Units sold per second until each round's last sale (median).
    pub sales_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Units sold in each round (the fewest, when rounds differ).
    pub units_sold: i64,
    /// Violations of all rounds together.
    pub violations: usize,
    /// Baseline throughput over this strategy's.
    pub baseline_ratio: f64,
    /// Baseline sales per second over this strategy's.
    pub sales_ratio: f64,
    /// The harness's share of the machine during the load (median), when measured: what the
    /// instrument took from the cores it shares with the server.
    pub harness_share: Option<f64>,
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
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut reports = Vec::new();
    let count = args.strategies.len();
    for round in 0..args.rounds as usize {
        for place in 0..count {
            let strategy = &args.strategies[(place + round) % count];
            let out = if args.rounds > 1 {
                args.drop.out.join(format!("round-{}", round + 1))
            } else {
                args.drop.out.clone()
            };
            let report = run_one(args, &given, &run, round, strategy, out).await?;
            reports.push((strategy.clone(), report));
        }
    }
    Ok(reports)
}

/// One strategy's drop (starting its server unless given), audited; its report is written.
async fn run_one(
    args: &CompareArgs,
    given: &[(String, String)],
    run: &str,
    round: usize,
    strategy: &str,
    out: PathBuf,
) -> anyhow::Result<Report> {
    let mut drop = args.drop.clone();
    drop.out = out.join(strategy);
    let started = match given.iter().find(|(name, _)| name == strategy) {
        Some((_, url)) => {
            drop.target = vec![url.clone()];
            None
        }
        None => {
            let database_url =
                server::database_for(&args.database_url, &format!("{}_{strategy}", round + 1));
            server::drop_database(&database_url).await?;
            server::ensure_database(&database_url).await?;
            let spec = ServerSpec {
                bin: args.server_bin.clone().unwrap_or_else(server::default_bin),
                strategy: strategy.to_owned(),
                database_url: database_url.clone(),
                redis_url: args.redis_url.clone(),
                redis_prefix: format!("{}{run}:{round}:{strategy}:", args.redis_prefix),
                admin_email: drop.admin_email.clone(),
                admin_password: drop.admin_password.clone(),
                log: server::log_path(&drop.out, "server"),
            };
            let server = Server::start(&spec).await?;
            drop.target = vec![server.base.clone()];
            Some((server, database_url))
        }
    };
    if !drop.quiet {
        eprintln!("== {strategy} at {}", drop.target[0]);
    }
    let report = drop_run::run(&drop).await;
    if let Some((server, database_url)) = started {
        server.stop().await;
        server::drop_database(&database_url).await?;
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
    Ok(report)
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

/// The table's rows, one per strategy in the order they first ran, each the median of its
/// rounds; ratios against the first strategy's median throughput and sales per second.
pub fn rows(reports: &[(String, Report)]) -> Vec<Row> {
    let mut order: Vec<&str> = Vec::new();
    for (strategy, _) in reports {
        if !order.contains(&strategy.as_str()) {
            order.push(strategy);
        }
    }
    let mut rows: Vec<Row> = order
        .into_iter()
        .map(|strategy| {
            let runs: Vec<&Report> = reports
                .iter()
                .filter(|(name, _)| name == strategy)
                .map(|(_, report)| report)
                .collect();
            let throughputs: Vec<f64> = runs.iter().map(|r| r.summary.throughput_rps).collect();
            Row {
                strategy: strategy.to_owned(),
                rounds: runs.len(),
                throughput_rps: median(&throughputs),
                throughput_min: throughputs.iter().copied().fold(f64::INFINITY, f64::min),
                throughput_max: throughputs.iter().copied().fold(0.0, f64::max),
                sales_per_s: median_of(&runs, |r| r.summary.sales_per_s),
                p50_ms: median_of(&runs, |r| r.summary.latency.p50),
                p99_ms: median_of(&runs, |r| r.summary.latency.p99),
                units_sold: runs.iter().map(|r| r.audit.sold).min().unwrap_or(0),
                violations: runs.iter().map(|r| r.audit.violations.len()).sum(),
                baseline_ratio: 0.0,
                sales_ratio: 0.0,
                harness_share: runs
                    .iter()
                    .map(|r| r.instrument.map(|i| i.machine_share))
                    .collect::<Option<Vec<f64>>>()
                    .map(|shares| median(&shares)),
            }
        })
        .collect();
    let (baseline, baseline_sales) = rows
        .first()
        .map(|row| (row.throughput_rps, row.sales_per_s))
        .unwrap_or_default();
    for row in &mut rows {
        row.baseline_ratio = ratio(baseline, row.throughput_rps);
        row.sales_ratio = ratio(baseline_sales, row.sales_per_s);
    }
    rows
}

/// `baseline / value`; infinite for a value of 0.
fn ratio(baseline: f64, value: f64) -> f64 {
    if value > 0.0 {
        baseline / value
    } else {
        f64::INFINITY
    }
}

/// The median of one figure of each run.
fn median_of(runs: &[&Report], figure: impl Fn(&Report) -> f64) -> f64 {
    median(&runs.iter().map(|r| figure(r)).collect::<Vec<_>>())
}

/// The median (the mean of the middle two for an even count); 0 for none.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The ratio table as text.
pub fn table(rows: &[Row]) -> String {
    let baseline = rows.first().map(|r| r.strategy.as_str()).unwrap_or("-");
    let mut out = format!(
        "{:<10} {:>6} {:>11} {:>13} {:>9} {:>9} {:>9} {:>6} {:>10} {:>8} {:>18}\n",
        "strategy",
        "rounds",
        "attempts/s",
        "min..max",
        "sales/s",
        "p50 ms",
        "p99 ms",
        "sold",
        "violations",
        "harness",
        format!("{baseline} ÷ this")
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>11.0} {:>13} {:>9.0} {:>9.2} {:>9.2} {:>6} {:>10} {:>8} {:>18}",
            row.strategy,
            row.rounds,
            row.throughput_rps,
            format!("{:.0}..{:.0}", row.throughput_min, row.throughput_max),
            row.sales_per_s,
            row.p50_ms,
            row.p99_ms,
            row.units_sold,
            row.violations,
            row.harness_share
                .map_or_else(|| "-".to_owned(), |share| format!("{:.0} %", share * 100.0)),
            format!("{:.2}x / {:.2}x", row.baseline_ratio, row.sales_ratio)
        );
    }
    out.push_str(
        "(ratios: attempts/s / sales/s; sales/s: units sold until the last sale; \
         harness: its share of this machine's CPU during the load)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Violation;

    fn run_of(throughput: f64, p99: f64, violations: usize) -> Report {
        let mut report = crate::report::tests::report(Vec::new());
        report.summary.throughput_rps = throughput;
        // Unrelated to the throughput, so the two ratios cannot stand in for each other.
        report.summary.sales_per_s = 100_000_000.0 / throughput;
        report.summary.latency.p99 = p99;
        report.audit.violations = (0..violations)
            .map(|_| Violation {
                invariant: "I1",
                detail: "fabricated".to_owned(),
            })
            .collect();
        report
    }

    #[test]
    fn rounds_become_one_row_per_strategy_of_medians_in_first_run_order() {
        let reports = vec![
            ("actor".to_owned(), run_of(30_000.0, 900.0, 0)),
            ("pg_row".to_owned(), run_of(5_000.0, 9_000.0, 0)),
            ("pg_row".to_owned(), run_of(7_000.0, 7_000.0, 1)),
            ("actor".to_owned(), run_of(50_000.0, 500.0, 0)),
            ("actor".to_owned(), run_of(40_000.0, 700.0, 0)),
            ("pg_row".to_owned(), run_of(6_000.0, 8_000.0, 0)),
        ];

        let rows = rows(&reports);

        let names: Vec<&str> = rows.iter().map(|row| row.strategy.as_str()).collect();
        assert_eq!(names, ["actor", "pg_row"]);
        let (actor, pg_row) = (&rows[0], &rows[1]);
        assert_eq!(actor.rounds, 3);
        assert_eq!(actor.throughput_rps, 40_000.0);
        assert_eq!(
            (actor.throughput_min, actor.throughput_max),
            (30_000.0, 50_000.0)
        );
        assert_eq!(actor.p99_ms, 700.0);
        assert_eq!(pg_row.throughput_rps, 6_000.0);
        assert_eq!(pg_row.p99_ms, 8_000.0);
        assert_eq!(pg_row.violations, 1);
        assert_eq!(actor.baseline_ratio, 1.0);
        assert!((pg_row.baseline_ratio - 40.0 / 6.0).abs() < 1e-9);
        assert_eq!(actor.sales_per_s, 2_500.0);
        assert!((pg_row.sales_per_s - 100_000.0 / 6.0).abs() < 1e-9);
        assert!((pg_row.sales_ratio - 0.15).abs() < 1e-9);
        let table = table(&rows);
        assert!(table.contains("30000..50000"), "{table}");
        assert!(table.contains("6.67x / 0.15x"), "{table}");
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn the_harness_share_is_the_median_of_the_rounds_and_unknown_if_one_lacks_it() {
        let with_share = |share: Option<f64>| {
            let mut report = run_of(1_000.0, 1.0, 0);
            report.instrument = share.map(|machine_share| crate::cpu::InstrumentUse {
                cpu_s: 1.0,
                machine_share,
                machine_busy: 0.5,
                cores: 2,
            });
            report
        };
        let reports = vec![
            ("actor".to_owned(), with_share(Some(0.4))),
            ("actor".to_owned(), with_share(Some(0.1))),
            ("actor".to_owned(), with_share(Some(0.3))),
            ("pg_row".to_owned(), with_share(Some(0.2))),
            ("pg_row".to_owned(), with_share(None)),
        ];

        let rows = rows(&reports);

        assert_eq!(rows[0].harness_share, Some(0.3));
        assert_eq!(rows[1].harness_share, None);
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("harness"), "{table}");
        assert!(lines[1].contains(" 30 % "), "{table}");
        assert!(lines[2].contains(" - "), "{table}");
    }
}
