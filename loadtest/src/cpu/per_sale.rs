//! CPU per sold unit of the server and its stores: the measure that does not depend on how
//! much of the shared cores the load generator took (throughput ratios do: BENCHMARKS §10).

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{Settled, Ticks, TICKS_PER_S};

/// What the parties used over the sale's window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaleWindow {
    pub used: Ticks,
    pub length: Duration,
    /// Whether it ended with the parties idle again (not at the cap).
    pub idle_reached: bool,
}

impl SaleWindow {
    /// From the parties' `start` sample, taken at `started`, to where they `settled`.
    pub fn until(start: &Ticks, started: Instant, settled: &Settled) -> Self {
        Self {
            used: settled.ticks.since(start),
            length: settled.at.saturating_duration_since(started),
            idle_reached: settled.idle_reached,
        }
    }
}

/// µs of CPU per unit sold, by party, over the sale's window (from the first attempt's send
/// until the server and its stores were idle again). A part is `None` where it could not be
/// measured, and every part is when nothing sold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuPerSale {
    /// The server process (all its threads); `None` when its pid is unknown.
    pub server_us: Option<f64>,
    /// Every `postgres` process on this machine; `None` when there is none.
    pub postgres_us: Option<f64>,
    /// Every `redis-server` process on this machine; `None` when there is none.
    pub redis_us: Option<f64>,
    /// The parts measured, together; `None` when the server is unknown (without it the rest
    /// would read as a total). A store with no process here adds nothing: SQLite runs inside
    /// the server, and a store on another machine is not measured.
    pub total_us: Option<f64>,
    /// Units held by buyers in the store after the run (the audit's count).
    pub units_sold: i64,
    /// The window, in seconds.
    pub window_s: f64,
    /// Whether the parties were idle again before the cap (if not, deferred work that came
    /// after the window is not counted).
    pub idle_reached: bool,
}

impl CpuPerSale {
    /// The measure of a `window` in which `units_sold` units were sold.
    pub fn of(window: &SaleWindow, units_sold: i64) -> Self {
        let used = &window.used;
        let per_unit = |ticks: Option<u64>| {
            let units = (units_sold > 0).then_some(units_sold as f64)?;
            Some(ticks? as f64 * 1e6 / TICKS_PER_S / units)
        };
        let total = used.server.map(|_| used.known_total());
        Self {
            server_us: per_unit(used.server),
            postgres_us: per_unit(used.postgres),
            redis_us: per_unit(used.redis),
            total_us: per_unit(total),
            units_sold,
            window_s: window.length.as_secs_f64(),
            idle_reached: window.idle_reached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(server: Option<u64>, postgres: Option<u64>, redis: Option<u64>) -> Ticks {
        Ticks {
            server,
            postgres,
            redis,
        }
    }

    fn window(used: Ticks, length: Duration, idle_reached: bool) -> SaleWindow {
        SaleWindow {
            used,
            length,
            idle_reached,
        }
    }

    #[test]
    fn the_window_runs_from_the_first_send_to_the_settled_sample() {
        let started = Instant::now();
        let start = used(Some(100), Some(40), Some(2));
        let settled = Settled {
            ticks: used(Some(250), Some(130), Some(8)),
            at: started + Duration::from_millis(3_700),
            idle_reached: true,
        };

        let sale = SaleWindow::until(&start, started, &settled);

        assert_eq!(sale.used, used(Some(150), Some(90), Some(6)));
        assert_eq!(sale.length, Duration::from_millis(3_700));
        assert!(sale.idle_reached);
    }

    #[test]
    fn ticks_become_microseconds_per_unit_sold() {
        // 1.5 s of server, 0.9 s of PostgreSQL, 0.06 s of Redis over 10,000 units.
        let ticks = used(Some(150), Some(90), Some(6));

        let sale = window(ticks, Duration::from_millis(4_250), true);

        let measure = CpuPerSale::of(&sale, 10_000);

        assert_eq!(measure.server_us, Some(150.0));
        assert_eq!(measure.postgres_us, Some(90.0));
        assert_eq!(measure.redis_us, Some(6.0));
        assert_eq!(measure.total_us, Some(246.0));
        assert_eq!(measure.units_sold, 10_000);
        assert_eq!(measure.window_s, 4.25);
        assert!(measure.idle_reached);
    }

    #[test]
    fn an_unknown_server_leaves_the_total_unknown_and_a_missing_store_adds_nothing() {
        let sale = window(used(None, Some(90), Some(6)), Duration::ZERO, true);
        let without_server = CpuPerSale::of(&sale, 300);
        assert_eq!(without_server.server_us, None);
        assert_eq!(without_server.postgres_us, Some(3_000.0));
        assert_eq!(without_server.total_us, None);

        let sale = window(used(Some(3), None, None), Duration::ZERO, false);
        let embedded = CpuPerSale::of(&sale, 4);
        assert_eq!((embedded.postgres_us, embedded.redis_us), (None, None));
        assert_eq!(embedded.server_us, Some(7_500.0));
        assert_eq!(embedded.total_us, Some(7_500.0));
    }

    #[test]
    fn nothing_sold_is_no_cost_per_unit() {
        let sale = window(used(Some(150), Some(90), Some(6)), Duration::ZERO, true);

        let measure = CpuPerSale::of(&sale, 0);

        assert_eq!(measure.total_us, None);
        assert_eq!((measure.server_us, measure.postgres_us), (None, None));
        assert_eq!(measure.units_sold, 0);
    }

    #[test]
    fn the_report_field_names_are_the_documented_ones() {
        let sale = window(used(None, Some(1), None), Duration::from_secs(2), false);
        let measure = CpuPerSale::of(&sale, 1);

        let json = serde_json::to_value(measure).unwrap();

        let expected = serde_json::json!({
            "server_us": null, "postgres_us": 10_000.0, "redis_us": null, "total_us": null,
            "units_sold": 1, "window_s": 2.0, "idle_reached": false
        });
        assert_eq!(json, expected);
    }
}
