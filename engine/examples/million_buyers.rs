//! Memory of one drop tracking 1,000,000 distinct buyers.
//!
//! Builds a [`DropBook`] with 1,000,000 units and a limit of one per user, reserves one unit for
//! each of 1,000,000 distinct users, and prints the process's resident memory (`VmRSS`, and the
//! peak `VmHWM`, from `/proc/self/status`) before and after. Linux only.
//!
//! Run with `cargo run --release -p hurry-engine --example million_buyers`; the figure is in
//! `BENCHMARKS.md`.

use anyhow::Context;
use chrono::Utc;
use hurry_engine::domain::Quantity;
use hurry_engine::drop::DropBook;
use hurry_persistence::DropSpec;

const NUM_BUYERS: i64 = 1_000_000;

fn main() -> anyhow::Result<()> {
    let before = Memory::read()?;

    let opens_at = Utc::now();
    let spec = DropSpec {
        opens_at,
        closes_at: opens_at + chrono::Duration::hours(1),
        per_user_limit: 1,
        total_units: NUM_BUYERS,
    };
    let mut book = DropBook::new(spec, &[], NUM_BUYERS);
    let one = Quantity::new(1).context("1 is a valid quantity")?;
    let now = opens_at + chrono::Duration::minutes(1);
    for user_id in 0..NUM_BUYERS {
        book.reserve(user_id, one, now)
            .with_context(|| format!("reserving for user {user_id}"))?;
    }

    let after = Memory::read()?;
    anyhow::ensure!(book.num_buyers() as i64 == NUM_BUYERS && book.available() == 0);
    let grown_kib = after.rss_kib.saturating_sub(before.rss_kib);
    println!("buyers tracked:     {}", book.num_buyers());
    println!("units pending:      {}", book.pending());
    println!("VmRSS before:       {} KiB", before.rss_kib);
    println!("VmRSS after:        {} KiB", after.rss_kib);
    println!(
        "VmRSS grown by:     {} KiB ({:.1} MiB, {:.1} bytes per buyer)",
        grown_kib,
        grown_kib as f64 / 1024.0,
        grown_kib as f64 * 1024.0 / NUM_BUYERS as f64
    );
    println!(
        "VmHWM (peak) after: {} KiB ({:.1} MiB)",
        after.peak_kib,
        after.peak_kib as f64 / 1024.0
    );
    Ok(())
}

/// The resident-set lines of `/proc/self/status`.
struct Memory {
    /// Resident set size now, in KiB.
    rss_kib: u64,
    /// Largest resident set size so far, in KiB.
    peak_kib: u64,
}

impl Memory {
    fn read() -> anyhow::Result<Self> {
        let status = std::fs::read_to_string("/proc/self/status")
            .context("reading /proc/self/status (Linux only)")?;
        Ok(Self {
            rss_kib: field_kib(&status, "VmRSS:")?,
            peak_kib: field_kib(&status, "VmHWM:")?,
        })
    }
}

/// The value of a `Name:   123 kB` line.
fn field_kib(status: &str, name: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .with_context(|| format!("no {name} line in /proc/self/status"))?;
    let value = line.trim().trim_end_matches("kB").trim();
    value
        .parse()
        .with_context(|| format!("{name} is not a number of kB: {value:?}"))
}
