//! The `hurry-loadtest` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hurry_loadtest::{compare, drop_run, plain};

#[derive(Parser)]
#[command(
    name = "hurry-loadtest",
    about = "Run drops against Hurry Up Order servers, audit the invariants, report"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision a drop and shoppers, run the load, audit, write the report.
    Drop(drop_run::DropArgs),
    /// The same drop against one server per stock strategy, with a ratio table.
    Compare(compare::CompareArgs),
    /// GET one plain URL (to check this instrument against wrk or oha).
    Http(plain::PlainArgs),
}

/// Exit code when the audit found a violation.
const AUDIT_FAILED: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hurry-loadtest: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Drop(args) => {
            let report = drop_run::run(&args).await?;
            let (json, html) = report.write(&args.out)?;
            print!("{}", report.text());
            println!("report: {} and {}", json.display(), html.display());
            Ok(verdict(report.audit.passed()))
        }
        Command::Compare(args) => {
            let reports = compare::run(&args).await?;
            let rows = compare::rows(&reports);
            let table = compare::table(&rows);
            std::fs::write(
                args.drop.out.join("compare.json"),
                serde_json::to_vec_pretty(&rows)?,
            )?;
            std::fs::write(args.drop.out.join("compare.txt"), &table)?;
            println!("\n{table}");
            Ok(verdict(rows.iter().all(|row| row.violations == 0)))
        }
        Command::Http(args) => {
            let result = plain::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verdict(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("hurry-loadtest: AUDIT FAILED (see the violations above)");
        ExitCode::from(AUDIT_FAILED)
    }
}
