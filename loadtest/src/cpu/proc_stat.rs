//! One process's `/proc/PID/stat`: its command name and CPU ticks.

use std::path::Path;

/// What the harness reads of a process's `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The command name (field 2), as the kernel keeps it (at most 15 bytes).
    pub comm: String,
    /// User + system ticks of all its threads (fields 14 and 15).
    pub own_ticks: u64,
    /// User + system ticks of its children that exited and were waited for (fields 16 and 17):
    /// a PostgreSQL backend that ends during a run leaves its time here, in the postmaster.
    pub reaped_ticks: u64,
}

impl ProcStat {
    /// Parses a stat line. The command name is in parentheses and may hold spaces and
    /// parentheses itself, so it runs to the last `)` and the fields are counted after it.
    pub fn parse(stat: &str) -> Option<Self> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?;
        // After the name the state is field 3, so utime (14) is the 12th field there.
        let mut fields = stat[close + 1..].split_whitespace().skip(11);
        let mut next = || fields.next()?.parse::<i64>().ok();
        let (user, system, children_user, children_system) = (next()?, next()?, next()?, next()?);
        // The kernel's types are signed; a negative count would be a kernel bug, not time.
        let ticks = |a: i64, b: i64| a.max(0) as u64 + b.max(0) as u64;
        Some(Self {
            comm: comm.to_owned(),
            own_ticks: ticks(user, system),
            reaped_ticks: ticks(children_user, children_system),
        })
    }

    /// Reads and parses `path` (a `/proc/PID/stat`); `None` if it is gone or unreadable.
    pub fn read(path: &Path) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(path).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_the_last_parenthesis() {
        let stat = "4242 (hurry (load) test) R 1 4242 4242 0 -1 4194304 1057 0 0 0 \
                    150 37 12 3 20 0 3 0 12345 1000000 500 18446744073709551615";

        let parsed = ProcStat::parse(stat).expect("a whole stat line");

        assert_eq!(parsed.comm, "hurry (load) test");
        assert_eq!((parsed.own_ticks, parsed.reaped_ticks), (187, 15));
    }

    #[test]
    fn a_name_that_looks_like_fields_does_not_shift_them() {
        // A name may hold ") S 1 2 3": the last parenthesis still ends it.
        let stat = "77 (postgres) S 1 2 3) S 1 77 77 0 -1 0 0 0 0 0 9 8 7 6 20 0 1 0 0 0 0";

        let parsed = ProcStat::parse(stat).expect("a whole stat line");

        assert_eq!(parsed.comm, "postgres) S 1 2 3");
        assert_eq!((parsed.own_ticks, parsed.reaped_ticks), (17, 13));
    }

    #[test]
    fn a_cut_short_or_nameless_line_is_nothing() {
        assert_eq!(ProcStat::parse("4242 (cut short) R 1 2"), None);
        assert_eq!(
            ProcStat::parse("4242 no name R 1 2 3 4 5 6 7 8 9 10 11 12 13 14"),
            None
        );
        assert_eq!(ProcStat::parse(") 4242 ( R"), None);
    }

    #[test]
    fn this_process_parses_from_the_real_proc() {
        let path = Path::new("/proc/self/stat");
        if !path.exists() {
            return;
        }

        let parsed = ProcStat::read(path).expect("this process's stat");

        // The test binary's name, cut to 15 bytes.
        assert!(
            !parsed.comm.is_empty() && parsed.comm.len() <= 15,
            "{parsed:?}"
        );
        assert_eq!(ProcStat::read(Path::new("/proc/0/stat")), None);
    }
}
