//! `hurry-loadtest compare`: the same drop against one server per stock strategy, each
//! audited, and a ratio table.
//!
//! - here: the flags and the runs, starting a server per run unless one is given;
//! - [`table`]: the rows (medians of the rounds, ratios to the first strategy) and their text.

mod table;

use std::path::PathBuf;

use anyhow::bail;

pub use table::{rows, table, CpuPerSaleRow, Row};

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
    /// Already running servers instead of starting them, as STRATEGY=URL (repeatable); with
    /// `@PID` after the URL, the server's process on this machine, for the CPU per sale.
    #[arg(long = "server", value_name = "STRATEGY=URL[@PID]")]
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
    if args.drop.server_pid.is_some() {
        bail!("compare knows the pids of the servers it starts; give one of a running server as --server STRATEGY=URL@PID");
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
    given: &[GivenServer],
    run: &str,
    round: usize,
    strategy: &str,
    out: PathBuf,
) -> anyhow::Result<Report> {
    let mut drop = args.drop.clone();
    drop.out = out.join(strategy);
    let started = match given.iter().find(|server| server.strategy == strategy) {
        Some(server) => {
            drop.target = vec![server.url.clone()];
            drop.server_pid = server.pid;
            None
        }
        None => {
            let (server, database_url) = start_server(args, &drop, run, round, strategy).await?;
            drop.target = vec![server.base.clone()];
            drop.server_pid = server.pid();
            drop.checkpoint_url = Some(database_url.clone());
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
        server::drop_redis_keys(&args.redis_url, &redis_prefix(args, run, round, strategy)).await?;
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

/// Starts `strategy`'s server for `round` on a fresh database; the server and that database.
async fn start_server(
    args: &CompareArgs,
    drop: &DropArgs,
    run: &str,
    round: usize,
    strategy: &str,
) -> anyhow::Result<(Server, String)> {
    let database_url =
        server::database_for(&args.database_url, &format!("{}_{strategy}", round + 1));
    server::drop_database(&database_url).await?;
    server::ensure_database(&database_url).await?;
    let spec = ServerSpec {
        bin: args.server_bin.clone().unwrap_or_else(server::default_bin),
        strategy: strategy.to_owned(),
        database_url: database_url.clone(),
        redis_url: args.redis_url.clone(),
        redis_prefix: redis_prefix(args, run, round, strategy),
        admin_email: drop.admin_email.clone(),
        admin_password: drop.admin_password.clone(),
        log: server::log_path(&drop.out, "server"),
    };
    Ok((Server::start(&spec).await?, database_url))
}

/// The Redis key prefix of `strategy`'s server in `round` of `run`.
fn redis_prefix(args: &CompareArgs, run: &str, round: usize, strategy: &str) -> String {
    format!("{}{run}:{round}:{strategy}:", args.redis_prefix)
}

/// A server `compare` did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GivenServer {
    strategy: String,
    url: String,
    /// Its process on this machine, when given.
    pid: Option<u32>,
}

/// The `--server STRATEGY=URL[@PID]` entries. A URL may hold `@` itself (`user@host`), so
/// only a last `@` followed by digits alone gives the pid.
fn given_servers(servers: &[String]) -> anyhow::Result<Vec<GivenServer>> {
    servers
        .iter()
        .map(|entry| {
            let Some((strategy, rest)) = entry.split_once('=') else {
                bail!("--server takes STRATEGY=URL[@PID], got {entry}");
            };
            let (url, pid) = match rest.rsplit_once('@') {
                Some((url, pid)) if pid.parse::<u32>().is_ok() => (url, pid.parse().ok()),
                _ => (rest, None),
            };
            Ok(GivenServer {
                strategy: strategy.to_owned(),
                url: url.to_owned(),
                pid,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_server_may_name_its_pid_after_the_url() {
        let entries = [
            "actor=http://127.0.0.1:8080@4242".to_owned(),
            "pg_row=http://127.0.0.1:8081".to_owned(),
            "redis_lua=http://u@127.0.0.1:8082".to_owned(),
        ];

        let given = given_servers(&entries).expect("valid entries");

        let server = |strategy: &str, url: &str, pid| GivenServer {
            strategy: strategy.to_owned(),
            url: url.to_owned(),
            pid,
        };
        assert_eq!(
            given,
            [
                server("actor", "http://127.0.0.1:8080", Some(4242)),
                server("pg_row", "http://127.0.0.1:8081", None),
                server("redis_lua", "http://u@127.0.0.1:8082", None),
            ]
        );
        assert!(given_servers(&["http://127.0.0.1:8080".to_owned()]).is_err());
    }
}
