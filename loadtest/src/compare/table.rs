//! The comparison table: one row per strategy, medians of its rounds, and the first
//! strategy's ratio to each.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::Report;

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
    /// CPU of the server and its stores per unit sold (medians).
    pub cpu_per_sale: CpuPerSaleRow,
    /// This strategy's total CPU per sale over the baseline's: how many times the baseline's
    /// CPU a sale costs here (above 1, the baseline spends less per unit sold, as above 1 in
    /// the throughput ratios means the baseline is faster). `None` where either total is
    /// unknown.
    pub cpu_ratio: Option<f64>,
}

/// The CPU per sale of a strategy's rounds: each part the median of its rounds, `None` when
/// a round lacks it. The total is the median of the rounds' totals, so the parts need not add
/// up to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuPerSaleRow {
    pub server_us: Option<f64>,
    pub postgres_us: Option<f64>,
    pub redis_us: Option<f64>,
    pub total_us: Option<f64>,
    /// Whether every round's window ended with the parties idle again.
    pub idle_reached: bool,
}

impl CpuPerSaleRow {
    fn of(runs: &[&Report]) -> Self {
        let part = |figure: fn(&crate::cpu::CpuPerSale) -> Option<f64>| {
            median_known(
                runs.iter()
                    .map(|r| r.cpu_per_sale.as_ref().and_then(figure)),
            )
        };
        Self {
            server_us: part(|cpu| cpu.server_us),
            postgres_us: part(|cpu| cpu.postgres_us),
            redis_us: part(|cpu| cpu.redis_us),
            total_us: part(|cpu| cpu.total_us),
            idle_reached: runs
                .iter()
                .all(|r| r.cpu_per_sale.is_some_and(|cpu| cpu.idle_reached)),
        }
    }

    /// `server+pg+redis=total` in whole µs, `-` for an unknown part, `*` when a round's
    /// window ended before idle.
    fn cell(&self) -> String {
        let us = |part: Option<f64>| part.map_or_else(|| "-".to_owned(), |us| format!("{us:.0}"));
        format!(
            "{}+{}+{}={}{}",
            us(self.server_us),
            us(self.postgres_us),
            us(self.redis_us),
            us(self.total_us),
            if self.idle_reached { "" } else { "*" }
        )
    }
}

/// The table's rows, one per strategy in the order they first ran, each the median of its
/// rounds; ratios against the first strategy's medians.
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
            row(strategy, &runs)
        })
        .collect();
    let Some(baseline) = rows.first().cloned() else {
        return rows;
    };
    for row in &mut rows {
        row.baseline_ratio = ratio(baseline.throughput_rps, row.throughput_rps);
        row.sales_ratio = ratio(baseline.sales_per_s, row.sales_per_s);
        row.cpu_ratio = baseline
            .cpu_per_sale
            .total_us
            .zip(row.cpu_per_sale.total_us)
            .map(|(baseline, this)| ratio(this, baseline));
    }
    rows
}

/// The row of one strategy's `runs`, without its ratios.
fn row(strategy: &str, runs: &[&Report]) -> Row {
    let throughputs: Vec<f64> = runs.iter().map(|r| r.summary.throughput_rps).collect();
    Row {
        strategy: strategy.to_owned(),
        rounds: runs.len(),
        throughput_rps: median(&throughputs),
        throughput_min: throughputs.iter().copied().fold(f64::INFINITY, f64::min),
        throughput_max: throughputs.iter().copied().fold(0.0, f64::max),
        sales_per_s: median_of(runs, |r| r.summary.sales_per_s),
        p50_ms: median_of(runs, |r| r.summary.latency.p50),
        p99_ms: median_of(runs, |r| r.summary.latency.p99),
        units_sold: runs.iter().map(|r| r.audit.sold).min().unwrap_or(0),
        violations: runs.iter().map(|r| r.audit.violations.len()).sum(),
        baseline_ratio: 0.0,
        sales_ratio: 0.0,
        harness_share: median_known(runs.iter().map(|r| r.instrument.map(|i| i.machine_share))),
        cpu_per_sale: CpuPerSaleRow::of(runs),
        cpu_ratio: None,
    }
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

/// The median of figures every run has; `None` when one lacks it (or there are none).
fn median_known(figures: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let known: Vec<f64> = figures.collect::<Option<_>>()?;
    (!known.is_empty()).then(|| median(&known))
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
        "{:<10} {:>6} {:>11} {:>13} {:>9} {:>9} {:>9} {:>6} {:>10} {:>8} {:>18} {:>34} {:>20}\n",
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
        format!("{baseline} ÷ this"),
        "cpu/sale µs (server+pg+redis=total)",
        format!("this ÷ {baseline} cpu")
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<10} {:>6} {:>11.0} {:>13} {:>9.0} {:>9.2} {:>9.2} {:>6} {:>10} {:>8} {:>18} {:>34} {:>20}",
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
            format!("{:.2}x / {:.2}x", row.baseline_ratio, row.sales_ratio),
            row.cpu_per_sale.cell(),
            row.cpu_ratio
                .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}x")),
        );
    }
    let _ = writeln!(
        out,
        "(ratios: {baseline} ÷ this in attempts/s / sales/s, this ÷ {baseline} in total CPU per \
         sale: above 1, {baseline} is faster or spends less per unit;\n sales/s: units sold until the last \
         sale; harness: its share of this machine's CPU during the load;\n cpu/sale: CPU of \
         the server, PostgreSQL and Redis from the first send until idle again, per unit sold \
         in the store, medians of the rounds; * a round was not idle by the end of its window)"
    );
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Violation;
    use crate::cpu::CpuPerSale;

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
    /// A round whose parts cost these µs per sale (the total their sum when the server is
    /// known).
    fn with_cpu(server: Option<f64>, postgres: f64, redis: f64, idle_reached: bool) -> Report {
        let mut report = run_of(1_000.0, 1.0, 0);
        report.cpu_per_sale = Some(CpuPerSale {
            server_us: server,
            postgres_us: Some(postgres),
            redis_us: Some(redis),
            total_us: server.map(|server| server + postgres + redis),
            units_sold: 100,
            window_s: 3.0,
            idle_reached,
        });
        report
    }

    #[test]
    fn cpu_per_sale_is_the_median_of_the_rounds_with_the_total_ratio_to_the_first() {
        let reports = vec![
            ("actor".to_owned(), with_cpu(Some(90.0), 60.0, 3.0, true)),
            ("actor".to_owned(), with_cpu(Some(110.0), 80.0, 1.0, true)),
            ("actor".to_owned(), with_cpu(Some(100.0), 50.0, 2.0, true)),
            ("pg_row".to_owned(), with_cpu(Some(300.0), 500.0, 0.0, true)),
            (
                "pg_row".to_owned(),
                with_cpu(Some(200.0), 400.0, 0.0, false),
            ),
        ];

        let rows = rows(&reports);

        let (actor, pg_row) = (&rows[0].cpu_per_sale, &rows[1].cpu_per_sale);
        // Totals 153, 191, 152: the median total is 153, not 100 + 60 + 2.
        assert_eq!(
            (
                actor.server_us,
                actor.postgres_us,
                actor.redis_us,
                actor.total_us
            ),
            (Some(100.0), Some(60.0), Some(2.0), Some(153.0))
        );
        assert!(actor.idle_reached);
        assert_eq!(pg_row.total_us, Some(700.0));
        assert!(!pg_row.idle_reached);
        assert_eq!(rows[0].cpu_ratio, Some(1.0));
        assert!((rows[1].cpu_ratio.unwrap() - 700.0 / 153.0).abs() < 1e-9);
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("cpu/sale µs (server+pg+redis=total)"),
            "{table}"
        );
        assert!(
            lines[1].contains(" 100+60+2=153 ") && lines[1].ends_with(" 1.00x"),
            "{table}"
        );
        assert!(
            lines[2].contains(" 250+450+0=700* ") && lines[2].ends_with(" 4.58x"),
            "{table}"
        );
    }

    #[test]
    fn an_unknown_part_in_any_round_is_unknown_in_the_row_and_its_ratio() {
        let reports = vec![
            ("actor".to_owned(), with_cpu(None, 60.0, 3.0, true)),
            ("actor".to_owned(), with_cpu(Some(90.0), 60.0, 3.0, true)),
            ("pg_row".to_owned(), with_cpu(Some(300.0), 500.0, 0.0, true)),
            ("pg_row".to_owned(), run_of(1_000.0, 1.0, 0)),
        ];
        let mut without = run_of(1_000.0, 1.0, 0);
        without.cpu_per_sale = None;
        let reports = [reports, vec![("pg_row".to_owned(), without)]].concat();

        let rows = rows(&reports);

        assert_eq!(rows[0].cpu_per_sale.server_us, None);
        assert_eq!(rows[0].cpu_per_sale.postgres_us, Some(60.0));
        assert_eq!(rows[0].cpu_ratio, None);
        assert_eq!(rows[1].cpu_per_sale.total_us, None);
        assert!(!rows[1].cpu_per_sale.idle_reached);
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].contains(" -+60+3=- ") && lines[1].ends_with(" -"),
            "{table}"
        );
    }
}
