//! What the instrument itself cost the machine during the load: this process's CPU time and
//! the whole machine's, from `/proc` (Linux; elsewhere nothing is reported).
//!
//! On a machine the harness shares with the server it loads, every CPU second it spends is
//! one the server does not get, and that cost is the same for every strategy, so it pulls
//! CPU-bound ratios toward 1 (BENCHMARKS §10). The report says how large it was.

use std::time::Instant;

use serde::Serialize;

/// `/proc` counts CPU time in `USER_HZ` ticks, 100 per second on every Linux ABI.
const TICKS_PER_S: f64 = 100.0;

/// CPU counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    /// This process's user + system ticks, all threads.
    process: u64,
    /// The machine's busy and total ticks, all cores.
    machine: Option<(u64, u64)>,
}

/// The instrument's share of the machine between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct InstrumentUse {
    /// CPU seconds this process used.
    pub cpu_s: f64,
    /// `cpu_s` over the wall time times the cores: 0.4 is 40 % of the machine.
    pub machine_share: f64,
    /// How busy the whole machine was (every process, every core), when known.
    pub machine_busy: Option<f64>,
    pub cores: usize,
}

/// The counters now; `None` where `/proc` cannot be read.
pub fn snapshot() -> Option<Snapshot> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let process = process_ticks(&stat)?;
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| machine_ticks(&text));
    Some(Snapshot {
        at: Instant::now(),
        process,
        machine,
    })
}

/// What happened between `before` and `after` on a machine of `cores` cores.
pub fn between(before: &Snapshot, after: &Snapshot, cores: usize) -> InstrumentUse {
    let wall = after.at.saturating_duration_since(before.at).as_secs_f64();
    let cpu_s = after.process.saturating_sub(before.process) as f64 / TICKS_PER_S;
    let capacity = wall * cores.max(1) as f64;
    let machine_busy = match (before.machine, after.machine) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            Some(busy1.saturating_sub(busy0) as f64 / (total1 - total0) as f64)
        }
        _ => None,
    };
    InstrumentUse {
        cpu_s,
        machine_share: if capacity > 0.0 {
            cpu_s / capacity
        } else {
            0.0
        },
        machine_busy,
        cores: cores.max(1),
    }
}

/// The cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// User + system ticks from `/proc/self/stat` (fields 14 and 15). The command name (field 2)
/// is in parentheses and may hold spaces and parentheses itself, so fields are counted after
/// its last `)`.
fn process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) is the 12th and stime (15) the 13th.
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Busy and total ticks of all cores from `/proc/stat`'s `cpu` line: idle and iowait are not
/// busy; guest time is already counted in user time, so it is left out of the total.
fn machine_ticks(text: &str) -> Option<(u64, u64)> {
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
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn process_ticks_are_counted_after_the_last_parenthesis() {
        let stat = "4242 (hurry (load) test) R 1 4242 4242 0 -1 4194304 1057 0 0 0 \
                    150 37 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(process_ticks(stat), Some(187));
        assert_eq!(process_ticks("4242 (cut short) R 1 2"), None);
    }

    #[test]
    fn the_machine_line_splits_busy_from_idle_and_iowait() {
        let text = "cpu  100 5 40 800 50 3 2 0 7 0\ncpu0 50 2 20 400 25 1 1 0 0 0\nintr 1 2\n";
        // user nice system idle iowait irq softirq steal: busy 150, total 1000.
        assert_eq!(machine_ticks(text), Some((150, 1000)));
        assert_eq!(machine_ticks("intr 1 2\n"), None);
    }

    #[test]
    fn the_share_is_cpu_time_over_wall_time_and_cores() {
        let at = Instant::now();
        let before = Snapshot {
            at,
            process: 1_000,
            machine: Some((5_000, 20_000)),
        };
        let after = Snapshot {
            at: at + Duration::from_secs(2),
            process: 1_160,                 // 1.6 CPU seconds
            machine: Some((5_360, 20_400)), // 360 of 400 ticks busy
        };
        let used = between(&before, &after, 2);
        assert!((used.cpu_s - 1.6).abs() < 1e-9, "{used:?}");
        assert!((used.machine_share - 0.4).abs() < 1e-9, "{used:?}");
        assert_eq!(used.machine_busy, Some(0.9));
        let unknown = Snapshot {
            machine: None,
            ..after
        };
        assert_eq!(between(&before, &unknown, 2).machine_busy, None);
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
        let used = between(&before, &after, cores());
        // 300 ms of spinning: at least a few ticks, whatever else the machine does.
        assert!(used.cpu_s >= 0.05, "{used:?}");
        assert!(used.machine_busy.is_some_and(|busy| busy > 0.0), "{used:?}");
    }
}
