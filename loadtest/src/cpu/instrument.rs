//! What the instrument itself cost the machine during the load: this process's CPU time and
//! the whole machine's, from `/proc` (Linux; elsewhere nothing is reported).
//!
//! On a machine the harness shares with the server it loads, every CPU second it spends is
//! one the server does not get, and that cost is the same for every strategy, so it pulls
//! CPU-bound ratios toward 1 (BENCHMARKS §10). The report says how large it was.

use serde::Serialize;

use super::{ProcStat, TICKS_PER_S};

/// CPU counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// This process's user + system ticks, all threads.
    process: u64,
    machine: Machine,
}

/// The machine's counters from `/proc/stat`: every core, every process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Machine {
    busy: u64,
    total: u64,
    cores: usize,
}

/// The instrument's share of the machine between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InstrumentUse {
    /// CPU seconds this process used.
    pub cpu_s: f64,
    /// This process's ticks over the machine's (all cores) meanwhile: 0.4 is 40 % of it.
    pub machine_share: f64,
    /// How busy the whole machine was (every process, every core).
    pub machine_busy: f64,
    pub cores: usize,
}

/// The counters now; `None` where `/proc` cannot be read.
pub fn snapshot() -> Option<Snapshot> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let machine = std::fs::read_to_string("/proc/stat").ok()?;
    Some(Snapshot {
        process: ProcStat::parse(&stat)?.own_ticks,
        machine: machine_ticks(&machine)?,
    })
}

/// What happened between `before` and `after`. Shares are of the machine's own tick count
/// (its cores times the time passed), the same measure for this process and for all of them.
pub fn between(before: &Snapshot, after: &Snapshot) -> InstrumentUse {
    let process = after.process.saturating_sub(before.process) as f64;
    let busy = after.machine.busy.saturating_sub(before.machine.busy) as f64;
    let total = after.machine.total.saturating_sub(before.machine.total) as f64;
    let of_total = |ticks: f64| if total > 0.0 { ticks / total } else { 0.0 };
    InstrumentUse {
        cpu_s: process / TICKS_PER_S,
        machine_share: of_total(process),
        machine_busy: of_total(busy),
        cores: after.machine.cores,
    }
}

/// Busy and total ticks of all cores from `/proc/stat`'s `cpu` line (idle and iowait are not
/// busy; guest time is already counted in user time, so it is left out of the total), and
/// the cores (its `cpuN` lines).
fn machine_ticks(text: &str) -> Option<Machine> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if values.len() < 5 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values[4];
    let cores = text
        .lines()
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    Some(Machine {
        busy: total - idle,
        total,
        cores: cores.max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_machine_line_splits_busy_from_idle_and_iowait() {
        let text = "cpu  100 5 40 800 50 3 2 0 7 0\ncpu0 50 2 20 400 25 1 1 0 0 0\nintr 1 2\n";
        // user nice system idle iowait irq softirq steal: busy 150, total 1000.
        assert_eq!(
            machine_ticks(text),
            Some(Machine {
                busy: 150,
                total: 1000,
                cores: 1
            })
        );
        assert_eq!(machine_ticks("intr 1 2\n"), None);
    }

    #[test]
    fn the_share_is_of_the_ticks_all_cores_counted_meanwhile() {
        let machine = |busy, total| Machine {
            busy,
            total,
            cores: 2,
        };
        let before = Snapshot {
            process: 1_000,
            machine: machine(5_000, 20_000),
        };
        let after = Snapshot {
            process: 1_160,                  // 1.6 CPU seconds
            machine: machine(5_360, 20_400), // 2 s on 2 cores, 360 of 400 ticks busy
        };
        let used = between(&before, &after);
        assert!((used.cpu_s - 1.6).abs() < 1e-9, "{used:?}");
        assert!((used.machine_share - 0.4).abs() < 1e-9, "{used:?}");
        assert_eq!(used.machine_busy, 0.9);
        assert_eq!(used.cores, 2);
        // No tick passed: nothing measured, not a division by zero.
        let none = between(&before, &before);
        assert_eq!((none.machine_share, none.machine_busy), (0.0, 0.0));
    }

    #[test]
    fn this_process_is_measured_where_proc_exists() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let before = snapshot().expect("a snapshot on Linux");
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = snapshot().expect("a snapshot on Linux");
        let used = between(&before, &after);
        // 300 ms of spinning: at least a few ticks, whatever else the machine does.
        assert!(used.cpu_s >= 0.05, "{used:?}");
        assert!(used.machine_busy > 0.0, "{used:?}");
        assert!(used.machine_share > 0.0 && used.cores >= 1, "{used:?}");
    }
}
