//! The `hurry-loadtest` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hurry_loadtest::{compare, drop_run, plain};

#[derive(Parser)]
#[command(
    name = "hurry-loadtest",
    about = "Run drops against Hurry Up Order servers, audit the invariants, report",
    // A flag given twice takes its last value, so scripts can append overrides to defaults.
    args_override_self = true
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

fn main() -> ExitCode {
    // Named threads, so that a profile tells the harness from the server it loads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadtest-worker")
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run(Cli::parse().command)),
        Err(err) => Err(err.into()),
    };
    match outcome {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_given_twice_takes_its_last_value() {
        // scripts/bench/drop-ab appends the caller's flags to its own defaults.
        let cli = Cli::try_parse_from([
            "hurry-loadtest",
            "compare",
            "--shoppers",
            "5",
            "--units",
            "3",
            "--shoppers",
            "7",
        ])
        .expect("a repeated flag parses");
        let Command::Compare(args) = cli.command else {
            panic!("not the compare command");
        };
        assert_eq!((args.drop.shoppers, args.drop.units), (7, 3));
    }
}
