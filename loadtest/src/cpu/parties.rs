//! The processes a sale costs CPU in: the server (by its pid, when the harness knows it),
//! every PostgreSQL process and every Redis process on this machine (by command name). The
//! harness itself is none of them.
//!
//! Each process counts its own ticks and those of its children that exited and were waited
//! for: a PostgreSQL backend that ends during the window moves its time into the postmaster's
//! child counters when reaped, so a sum over the processes alive at each end still holds it.

use std::path::PathBuf;

use super::ProcStat;

/// PostgreSQL's processes (postmaster, backends, background workers) all have this name.
const POSTGRES: &str = "postgres";
/// Redis's server process.
const REDIS: &str = "redis-server";

/// CPU ticks of each party at one moment, or used between two; `None` where the party could
/// not be read (its pid unknown or gone; no such process on this machine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticks {
    pub server: Option<u64>,
    pub postgres: Option<u64>,
    pub redis: Option<u64>,
}

impl Ticks {
    /// What each party used from `before` to `self`; unknown where either side is.
    pub fn since(&self, before: &Ticks) -> Ticks {
        let used = |after: Option<u64>, before: Option<u64>| {
            after
                .zip(before)
                .map(|(after, before)| after.saturating_sub(before))
        };
        Ticks {
            server: used(self.server, before.server),
            postgres: used(self.postgres, before.postgres),
            redis: used(self.redis, before.redis),
        }
    }

    /// The known parties together (what the idle rule watches).
    pub fn known_total(&self) -> u64 {
        [self.server, self.postgres, self.redis]
            .into_iter()
            .flatten()
            .sum()
    }
}

/// Where the parties are found.
#[derive(Debug, Clone)]
pub struct Parties {
    /// `/proc`, or a fake of it in tests.
    root: PathBuf,
    /// The server process, when the harness started it or was told its pid.
    server_pid: Option<u32>,
}

impl Parties {
    /// The parties of this machine, with the server's pid when known.
    pub fn new(server_pid: Option<u32>) -> Self {
        Self::under("/proc", server_pid)
    }

    /// The parties of the `/proc`-like folder `root`.
    pub fn under(root: impl Into<PathBuf>, server_pid: Option<u32>) -> Self {
        Self {
            root: root.into(),
            server_pid,
        }
    }

    /// Every party's ticks now; `None` where the folder cannot be listed (not Linux). Reads
    /// every process's stat (a few hundred small files): it runs before and after the load,
    /// never during it.
    pub fn sample(&self) -> Option<Ticks> {
        let mut ticks = Ticks::default();
        for entry in std::fs::read_dir(&self.root).ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue; // not a process: `self`, `stat`, `sys`, ...
            };
            // A process that exited since the listing is skipped: once reaped, its time is
            // in its parent's counters.
            let Some(stat) = ProcStat::read(&entry.path().join("stat")) else {
                continue;
            };
            let party = if Some(pid) == self.server_pid {
                &mut ticks.server
            } else if stat.comm == POSTGRES {
                &mut ticks.postgres
            } else if stat.comm == REDIS {
                &mut ticks.redis
            } else {
                continue;
            };
            *party = Some(party.unwrap_or(0) + stat.own_ticks + stat.reaped_ticks);
        }
        Some(ticks)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;

    /// A stat line for `comm` with these user, system, reaped user and reaped system ticks.
    fn stat_line(pid: u32, comm: &str, ticks: [u64; 4]) -> String {
        let [user, system, reaped_user, reaped_system] = ticks;
        format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {user} {system} \
             {reaped_user} {reaped_system} 20 0 1 0 100 1000 10 18446744073709551615"
        )
    }

    fn fake_proc(processes: &[(u32, &str, [u64; 4])]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("a temporary folder");
        for (pid, comm, ticks) in processes {
            let dir = root.path().join(pid.to_string());
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("stat"), stat_line(*pid, comm, *ticks)).unwrap();
        }
        // What else /proc holds: machine files and a process folder without its stat.
        std::fs::write(root.path().join("stat"), "cpu  1 2 3 4\n").unwrap();
        std::fs::create_dir(root.path().join("self")).unwrap();
        std::fs::create_dir(root.path().join("999")).unwrap();
        root
    }

    #[test]
    fn each_party_sums_its_processes_and_their_reaped_children() {
        let root = fake_proc(&[
            (10, "postgres", [100, 50, 400, 100]), // the postmaster, with reaped backends
            (11, "postgres", [30, 20, 0, 0]),
            (20, "redis-server", [7, 3, 1, 0]),
            (30, "hurry", [900, 100, 0, 0]),
            (40, "hurry-loadtest", [500, 500, 0, 0]),
        ]);

        let ticks = Parties::under(root.path(), Some(30)).sample().unwrap();

        assert_eq!(
            ticks,
            Ticks {
                server: Some(1_000),
                postgres: Some(700),
                redis: Some(11),
            }
        );
    }

    #[test]
    fn odd_names_are_not_the_stores_and_an_unknown_server_is_unknown() {
        let root = fake_proc(&[
            (10, "postgres) S 1", [100, 0, 0, 0]),
            (11, "my postgres", [100, 0, 0, 0]),
            (12, "postgres ", [100, 0, 0, 0]),
            (13, "redis-server *:6379", [100, 0, 0, 0]),
            (14, "(redis-server)", [100, 0, 0, 0]),
            (15, "postgres", [5, 1, 0, 0]),
        ]);

        let ticks = Parties::under(root.path(), None).sample().unwrap();

        assert_eq!(
            ticks,
            Ticks {
                server: None,
                postgres: Some(6),
                redis: None,
            }
        );
        let gone = Parties::under(root.path(), Some(4242)).sample().unwrap();
        assert_eq!(gone.server, None);
    }

    #[test]
    fn a_missing_proc_is_no_sample() {
        assert_eq!(Parties::under("/nonexistent/proc", None).sample(), None);
    }

    #[test]
    fn used_ticks_are_known_only_where_both_ends_are() {
        let before = Ticks {
            server: Some(100),
            postgres: Some(500),
            redis: None,
        };
        let after = Ticks {
            server: Some(350),
            postgres: Some(520),
            redis: Some(9),
        };

        let used = after.since(&before);

        assert_eq!(
            used,
            Ticks {
                server: Some(250),
                postgres: Some(20),
                redis: None,
            }
        );
        assert_eq!(used.known_total(), 270);
    }

    #[test]
    fn this_process_as_the_server_is_sampled_from_the_real_proc() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        let parties = Parties::new(Some(std::process::id()));
        let before = parties.sample().expect("a sample on Linux");
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }

        let used = parties.sample().expect("a sample on Linux").since(&before);

        // 300 ms of spinning: at least a few ticks, whatever else the machine does.
        assert!(used.server.is_some_and(|ticks| ticks >= 5), "{used:?}");
    }
}
