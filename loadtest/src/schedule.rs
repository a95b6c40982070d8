//! The arrival scheduler: when each purchase attempt is sent.
//!
//! The drop's models are *open*: an attempt goes out at its arrival time, decided before the
//! run starts, whether or not earlier attempts have been answered, and its latency is measured
//! from that time. A server that stalls therefore shows the stall in every attempt that arrived
//! during it (no coordinated omission). The sustained sale is *closed* ([`ClosedLoop`]): each
//! connection sends its next attempt when the last is answered, so the server sets the pace
//! and the question is what each sale costs, not how long a shopper waits.

use std::time::Duration;

/// How attempts arrive over the run.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalModel {
    /// The same rate from start to end.
    Constant,
    /// The rate rises linearly from zero to twice the mean rate at the end.
    Ramp,
    /// A share of all attempts in the first second (the drop opens), the rest at a constant rate.
    Burst,
    /// No plan: each connection sends its next attempt as soon as the last is answered, for the
    /// duration ([`ClosedLoop`]).
    Closed,
}

/// One planned attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Offset from the start of the run.
    pub at: Duration,
    /// Index of the shopper who sends it.
    pub shopper: usize,
    /// The logical request: a retry shares its original's number (and so its key).
    pub request: usize,
    /// Whether this is the repeat of `request` with the same idempotency key.
    pub retry: bool,
    /// Whether `request` is sent twice (true on the original and on the retry).
    pub repeated: bool,
}

/// Which attempts carry an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPolicy {
    /// Every attempt, as a careful client sends them.
    All,
    /// Only the requests the harness sends twice (and their retries).
    Retried,
}

impl KeyPolicy {
    /// Whether `arrival` carries its request's key.
    pub fn keyed(self, arrival: &Arrival) -> bool {
        self == KeyPolicy::All || arrival.repeated
    }
}

/// What the runner sends: planned arrivals (open models) or a closed loop.
#[derive(Debug, Clone)]
pub enum Workload {
    Open(Vec<Arrival>),
    Closed(ClosedLoop),
}

/// Whether logical request `request` is one of the `share` sent twice: it is when the running
/// share first reaches the next whole retry, so retries are spread evenly (every
/// `1 / share`-th request) in every model.
pub fn repeated(request: usize, share: f64) -> bool {
    let due = |requests: usize| (requests as f64 * share).floor() as usize;
    due(request + 1) > due(request)
}

/// What the plan is built from.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub model: ArrivalModel,
    /// Logical requests (retries come on top).
    pub requests: usize,
    pub shoppers: usize,
    pub duration: Duration,
    /// Share of requests sent a second time with the same key, 0.0..=1.0.
    pub retry_share: f64,
    /// How long after its original a retry is sent.
    pub retry_after: Duration,
    /// For [`ArrivalModel::Burst`]: share of requests in the first second.
    pub burst_share: f64,
}

/// The burst of [`ArrivalModel::Burst`] lasts this long.
pub const BURST_WINDOW: Duration = Duration::from_secs(1);

impl Plan {
    /// Every attempt, sorted by send time. Request `i` belongs to shopper `i % shoppers`; the
    /// retried requests are spread evenly ([`repeated`]).
    pub fn arrivals(&self) -> Vec<Arrival> {
        let shoppers = self.shoppers.max(1);
        let mut arrivals = Vec::with_capacity(self.requests + self.retries());
        for request in 0..self.requests {
            let at = self.offset(request);
            let shopper = request % shoppers;
            let repeated = repeated(request, self.retry_share);
            arrivals.push(Arrival {
                at,
                shopper,
                request,
                retry: false,
                repeated,
            });
            if repeated {
                arrivals.push(Arrival {
                    at: at + self.retry_after,
                    shopper,
                    request,
                    retry: true,
                    repeated,
                });
            }
        }
        arrivals.sort_by_key(|arrival| arrival.at);
        arrivals
    }

    /// How many requests are sent twice.
    pub fn retries(&self) -> usize {
        (self.requests as f64 * self.retry_share).floor() as usize
    }

    /// Send time of logical request `index`.
    fn offset(&self, index: usize) -> Duration {
        let n = self.requests as f64;
        let total = self.duration.as_secs_f64();
        let i = index as f64;
        let seconds = match self.model {
            // A closed loop plans nothing (`ClosedLoop`); a plan asked of it is evenly spaced.
            ArrivalModel::Constant | ArrivalModel::Closed => total * i / n,
            // Cumulative arrivals grow as t²: the i-th arrives at total * sqrt(i / n).
            ArrivalModel::Ramp => total * (i / n).sqrt(),
            ArrivalModel::Burst => {
                let window = BURST_WINDOW.as_secs_f64().min(total);
                let in_burst = (n * self.burst_share).floor();
                if i < in_burst {
                    window * i / in_burst
                } else {
                    let rest = n - in_burst;
                    window + (total - window) * (i - in_burst) / rest
                }
            }
        };
        Duration::from_secs_f64(seconds)
    }
}

/// The closed model: what each connection sends next, request after request, for the duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClosedLoop {
    pub shoppers: usize,
    /// How long connections start new requests.
    pub duration: Duration,
    /// Share of requests sent a second time with the same key, 0.0..=1.0.
    pub retry_share: f64,
}

impl ClosedLoop {
    /// The attempts of logical request `request`, in the order one connection sends them: the
    /// request, and its retry when it is [`repeated`] (sent as soon as the original is
    /// answered, so it must get the stored answer back). Requests go round the shoppers; `at`
    /// is left for the runner to fill in with the send time.
    pub fn attempts(&self, request: usize) -> impl Iterator<Item = Arrival> {
        let repeated = repeated(request, self.retry_share);
        let original = Arrival {
            at: Duration::ZERO,
            shopper: request % self.shoppers.max(1),
            request,
            retry: false,
            repeated,
        };
        let retry = repeated.then_some(Arrival {
            retry: true,
            ..original
        });
        std::iter::once(original).chain(retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(model: ArrivalModel, requests: usize) -> Plan {
        Plan {
            model,
            requests,
            shoppers: 100,
            duration: Duration::from_secs(10),
            retry_share: 0.0,
            retry_after: Duration::from_millis(20),
            burst_share: 0.5,
        }
    }

    /// Attempts sent in `[from, to)` seconds.
    fn sent_between(arrivals: &[Arrival], from: f64, to: f64) -> usize {
        arrivals
            .iter()
            .filter(|a| a.at.as_secs_f64() >= from && a.at.as_secs_f64() < to)
            .count()
    }

    #[test]
    fn constant_rate_sends_the_same_number_every_second() {
        let arrivals = plan(ArrivalModel::Constant, 10_000).arrivals();
        assert_eq!(arrivals.len(), 10_000);
        for second in 0..10 {
            let sent = sent_between(&arrivals, second as f64, second as f64 + 1.0);
            assert_eq!(sent, 1_000, "second {second}");
        }
        assert!(arrivals.last().unwrap().at < Duration::from_secs(10));
    }

    #[test]
    fn ramp_rises_linearly() {
        let arrivals = plan(ArrivalModel::Ramp, 10_000).arrivals();
        // Rate at t is 2 * mean * t / T: the first second gets 1%, the last 19%.
        assert_eq!(sent_between(&arrivals, 0.0, 1.0), 100);
        assert_eq!(sent_between(&arrivals, 9.0, 10.0), 1_900);
        let per_second: Vec<usize> = (0..10)
            .map(|s| sent_between(&arrivals, s as f64, s as f64 + 1.0))
            .collect();
        assert!(per_second.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn burst_sends_its_share_in_the_first_second() {
        let arrivals = plan(ArrivalModel::Burst, 10_000).arrivals();
        assert_eq!(sent_between(&arrivals, 0.0, 1.0), 5_000);
        // The other half spread over the remaining nine seconds.
        for second in 1..10 {
            let sent = sent_between(&arrivals, second as f64, second as f64 + 1.0);
            assert!((555..=556).contains(&sent), "second {second}: {sent}");
        }
    }

    #[test]
    fn retries_repeat_their_request_later_with_the_same_shopper() {
        let mut plan = plan(ArrivalModel::Constant, 1_000);
        plan.retry_share = 0.05;
        let arrivals = plan.arrivals();
        let retries: Vec<&Arrival> = arrivals.iter().filter(|a| a.retry).collect();
        assert_eq!(retries.len(), 50);
        assert_eq!(plan.retries(), 50);
        for retry in retries {
            let original = arrivals
                .iter()
                .find(|a| !a.retry && a.request == retry.request)
                .expect("every retry has its original");
            assert_eq!(original.shopper, retry.shopper);
            assert!(original.repeated && retry.repeated);
            assert_eq!(retry.at, original.at + Duration::from_millis(20));
        }
        assert!(arrivals.windows(2).all(|pair| pair[0].at <= pair[1].at));
        assert_eq!(arrivals.iter().filter(|a| a.repeated).count(), 100);
    }

    #[test]
    fn a_closed_loop_sends_a_retry_right_after_its_original_with_its_shopper() {
        let closed = ClosedLoop {
            shoppers: 3,
            duration: Duration::from_secs(1),
            retry_share: 0.25,
        };

        let attempts: Vec<Arrival> = (0..8).flat_map(|r| closed.attempts(r)).collect();

        let shape: Vec<(usize, usize, bool)> = attempts
            .iter()
            .map(|a| (a.request, a.shopper, a.retry))
            .collect();
        let expected = [
            (0, 0, false),
            (1, 1, false),
            (2, 2, false),
            (3, 0, false),
            (3, 0, true),
            (4, 1, false),
            (5, 2, false),
            (6, 0, false),
            (7, 1, false),
            (7, 1, true),
        ];
        assert_eq!(shape, expected);
        let repeated: Vec<usize> = attempts
            .iter()
            .filter(|a| a.repeated)
            .map(|a| a.request)
            .collect();
        assert_eq!(repeated, [3, 3, 7, 7]);
    }

    #[test]
    fn retries_are_the_same_requests_in_the_open_and_the_closed_model() {
        let mut open = plan(ArrivalModel::Constant, 1_000);
        open.retry_share = 0.03;
        let closed = ClosedLoop {
            shoppers: 100,
            duration: Duration::from_secs(1),
            retry_share: 0.03,
        };

        let planned: Vec<usize> = open
            .arrivals()
            .iter()
            .filter(|a| a.retry)
            .map(|a| a.request)
            .collect();
        let looped: Vec<usize> = (0..1_000)
            .flat_map(|r| closed.attempts(r))
            .filter(|a| a.retry)
            .map(|a| a.request)
            .collect();

        assert_eq!(planned.len(), 30);
        assert_eq!(planned, looped);
        assert!(!repeated(0, 0.0) && repeated(0, 1.0) && repeated(999, 1.0));
    }

    #[test]
    fn requests_go_round_the_shoppers() {
        let arrivals = plan(ArrivalModel::Constant, 250).arrivals();
        let of_first: usize = arrivals.iter().filter(|a| a.shopper == 0).count();
        assert_eq!(of_first, 3);
        assert!(arrivals.iter().all(|a| a.shopper < 100));
    }
}
