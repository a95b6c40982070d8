//! What the run measured: HDR latency histograms, overall and per second, and outcomes.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// One answered (or failed) attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub request: usize,
    pub shopper: usize,
    pub retry: bool,
    /// Planned send time, from the start of the run.
    pub scheduled: Duration,
    /// From the planned send time to the complete answer.
    pub latency: Duration,
    /// HTTP status; 0 when no answer came (connection error, timeout).
    pub status: u16,
    /// The API error code, if any.
    pub code: Option<String>,
    /// The order of a 201.
    pub order_id: Option<i64>,
    /// Units bought by a 201.
    pub quantity: i64,
}

impl Outcome {
    /// `201`, `409 sold_out`, `0 transport` and so on.
    pub fn label(&self) -> String {
        match (&self.code, self.status) {
            (_, 0) => "0 transport".to_owned(),
            (Some(code), status) => format!("{status} {code}"),
            (None, status) => status.to_string(),
        }
    }
}

/// A latency histogram in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records `latency` (clamped into the histogram's range).
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = (latency.as_micros() as u64).clamp(1, histogram.high());
    histogram.record(micros).expect("clamped into range");
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1_000.0,
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub second: u64,
    /// Attempts answered during this second.
    pub completed: u64,
    /// Answers during this second by outcome label.
    pub outcomes: BTreeMap<String, u64>,
    /// Latency of the attempts *scheduled* in this second (so a stall shows where it began).
    pub latency: Option<Percentiles>,
}

/// The answers of one slice of the run, by the time they came back.
#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    /// Start of the slice, seconds after the first planned send.
    pub start_s: f64,
    /// Answers by outcome label.
    pub outcomes: BTreeMap<String, u64>,
}

/// Runs up to this long are sliced in tenths of a second, longer ones in seconds: a drop that
/// opens with a burst is over in a few seconds, and its phases (the buyers' commits, then the
/// refusals) only show at that grain.
const FINE_SLICES_UP_TO: Duration = Duration::from_secs(30);

/// One point of the latency distribution.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CdfPoint {
    pub percentile: f64,
    pub latency_ms: f64,
}

/// Everything the report needs about the load itself.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub attempts: u64,
    /// From the first planned send to the last answer.
    pub elapsed_s: f64,
    /// Answered attempts per second over `elapsed_s`.
    pub throughput_rps: f64,
    pub latency: Percentiles,
    pub outcomes: BTreeMap<String, u64>,
    pub units_sold: i64,
    /// Answer time of the last sale (a first attempt's 201), from the first planned send; 0
    /// when nothing sold. In a drop that sells out, how long its units took to sell.
    pub last_sale_s: f64,
    /// Units sold per second until the last sale: the stock strategy's own speed, which the
    /// attempts' throughput dilutes with the refusals after the drop sold out.
    pub sales_per_s: f64,
    pub timeline: Vec<Second>,
    /// Width of the slices of `answers`, in seconds.
    pub slice_s: f64,
    /// Answers by answer time, slice by slice (what the throughput and outcome charts draw).
    pub answers: Vec<Slice>,
    pub cdf: Vec<CdfPoint>,
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut overall = histogram();
        let mut by_label: BTreeMap<String, u64> = BTreeMap::new();
        let mut seconds: Vec<(u64, BTreeMap<String, u64>, Histogram<u64>)> = Vec::new();
        let mut end = Duration::ZERO;
        let mut units_sold = 0;
        let mut last_sale = Duration::ZERO;
        for outcome in outcomes {
            record(&mut overall, outcome.latency);
            let label = outcome.label();
            *by_label.entry(label.clone()).or_default() += 1;
            let done = outcome.scheduled + outcome.latency;
            end = end.max(done);
            let done_second = done.as_secs() as usize;
            let scheduled_second = outcome.scheduled.as_secs() as usize;
            let needed = done_second.max(scheduled_second) + 1;
            while seconds.len() < needed {
                seconds.push((0, BTreeMap::new(), histogram()));
            }
            seconds[done_second].0 += 1;
            *seconds[done_second].1.entry(label).or_default() += 1;
            record(&mut seconds[scheduled_second].2, outcome.latency);
            if outcome.status == 201 && !outcome.retry {
                units_sold += outcome.quantity;
                last_sale = last_sale.max(done);
            }
        }
        let elapsed_s = end.as_secs_f64();
        let last_sale_s = last_sale.as_secs_f64();
        let (slice_s, answers) = slices(outcomes, end);
        let timeline = seconds
            .into_iter()
            .enumerate()
            .map(|(second, (completed, outcomes, latency))| Second {
                second: second as u64,
                completed,
                outcomes,
                latency: (!latency.is_empty()).then(|| Percentiles::of(&latency)),
            })
            .collect();
        Self {
            attempts: outcomes.len() as u64,
            elapsed_s,
            throughput_rps: if elapsed_s > 0.0 {
                outcomes.len() as f64 / elapsed_s
            } else {
                0.0
            },
            latency: Percentiles::of(&overall),
            outcomes: by_label,
            units_sold,
            last_sale_s,
            sales_per_s: if last_sale_s > 0.0 {
                units_sold as f64 / last_sale_s
            } else {
                0.0
            },
            timeline,
            slice_s,
            answers,
            cdf: cdf(&overall),
        }
    }
}

/// The answers of a run that ended at `end`, sliced by answer time; the slice width.
fn slices(outcomes: &[Outcome], end: Duration) -> (f64, Vec<Slice>) {
    let width = if end <= FINE_SLICES_UP_TO {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    let count = (end.as_nanos() / width.as_nanos()) as usize + 1;
    let mut answers: Vec<Slice> = (0..count)
        .map(|index| Slice {
            start_s: (width * index as u32).as_secs_f64(),
            outcomes: BTreeMap::new(),
        })
        .collect();
    for outcome in outcomes {
        let done = outcome.scheduled + outcome.latency;
        let index = ((done.as_nanos() / width.as_nanos()) as usize).min(count - 1);
        *answers[index].outcomes.entry(outcome.label()).or_default() += 1;
    }
    (width.as_secs_f64(), answers)
}

/// The latency distribution at percentiles spaced evenly on a "nines" scale (50, 90, 99, ...).
fn cdf(histogram: &Histogram<u64>) -> Vec<CdfPoint> {
    if histogram.is_empty() {
        return Vec::new();
    }
    // 0.0, 0.1, ... nines: percentile 1 - 10^-nines.
    (0..=40)
        .map(|step| {
            let nines = f64::from(step) / 10.0;
            let quantile = 1.0 - 10f64.powf(-nines);
            CdfPoint {
                percentile: quantile * 100.0,
                latency_ms: histogram.value_at_quantile(quantile) as f64 / 1_000.0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(scheduled_ms: u64, latency_ms: u64, status: u16) -> Outcome {
        Outcome {
            request: 0,
            shopper: 0,
            retry: false,
            scheduled: Duration::from_millis(scheduled_ms),
            latency: Duration::from_millis(latency_ms),
            status,
            code: (status == 409).then(|| "sold_out".to_owned()),
            order_id: (status == 201).then_some(1),
            quantity: 1,
        }
    }

    #[test]
    fn a_stall_shows_in_the_second_it_began_and_in_the_tail() {
        let mut outcomes: Vec<Outcome> = (0..99).map(|i| outcome(i * 10, 2, 201)).collect();
        // Scheduled at 0.5 s, answered 3 s later.
        outcomes.push(outcome(500, 3_000, 409));
        let summary = Summary::of(&outcomes);
        assert_eq!(summary.attempts, 100);
        assert_eq!(summary.units_sold, 99);
        assert_eq!(summary.outcomes["201"], 99);
        assert_eq!(summary.outcomes["409 sold_out"], 1);
        assert!((summary.latency.p50 - 2.0).abs() < 0.01);
        assert!(summary.latency.max >= 2_999.0);
        assert!((summary.elapsed_s - 3.5).abs() < 0.01);
        // The last sale was answered at 0.98 s + 2 ms.
        assert!((summary.last_sale_s - 0.982).abs() < 1e-9);
        assert!((summary.sales_per_s - 99.0 / 0.982).abs() < 1e-6);
        let first = &summary.timeline[0];
        assert!(first.latency.unwrap().max >= 2_999.0);
        // Answered in second 3.
        assert_eq!(summary.timeline[3].outcomes["409 sold_out"], 1);
        assert!(summary.timeline[3].latency.is_none());
    }

    #[test]
    fn sales_count_first_attempts_only_and_end_at_the_last_one() {
        let mut retried_sale = outcome(0, 2_000, 201);
        retried_sale.retry = true;
        let outcomes = vec![
            outcome(0, 400, 201),
            outcome(100, 400, 201),
            // Refusals and a retry's repeated answer come later, and do not move the end.
            outcome(200, 1_500, 409),
            retried_sale,
        ];

        let summary = Summary::of(&outcomes);

        assert_eq!(summary.units_sold, 2);
        assert!((summary.last_sale_s - 0.5).abs() < 1e-9);
        assert!((summary.sales_per_s - 4.0).abs() < 1e-9);
        assert!((summary.elapsed_s - 2.0).abs() < 1e-9);
    }

    #[test]
    fn nothing_sold_is_no_rate() {
        let summary = Summary::of(&[outcome(0, 10, 409)]);
        assert_eq!(summary.units_sold, 0);
        assert_eq!(summary.sales_per_s, 0.0);
    }

    #[test]
    fn answers_are_sliced_by_answer_time_in_tenths_for_a_short_run() {
        // Two buyers answered at 0.15 and 0.18 s, then a refusal at 0.42 s.
        let outcomes = vec![
            outcome(100, 50, 201),
            outcome(0, 180, 201),
            outcome(20, 400, 409),
        ];

        let summary = Summary::of(&outcomes);

        assert_eq!(summary.slice_s, 0.1);
        let counts: Vec<(f64, u64, u64)> = summary
            .answers
            .iter()
            .map(|slice| {
                let of = |label: &str| slice.outcomes.get(label).copied().unwrap_or(0);
                (slice.start_s, of("201"), of("409 sold_out"))
            })
            .collect();
        assert_eq!(
            counts,
            [
                (0.0, 0, 0),
                (0.1, 2, 0),
                (0.2, 0, 0),
                (0.3, 0, 0),
                (0.4, 0, 1)
            ]
        );
    }

    #[test]
    fn a_long_run_is_sliced_in_seconds() {
        let outcomes = vec![outcome(0, 5, 201), outcome(40_000, 700, 201)];

        let summary = Summary::of(&outcomes);

        assert_eq!(summary.slice_s, 1.0);
        assert_eq!(summary.answers.len(), 41);
        assert_eq!(summary.answers[40].outcomes["201"], 1);
    }
}
