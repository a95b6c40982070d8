//! Fault settings, set at runtime per gateway (`PUT /pg-sandbox/faults`), and the draw that
//! decides what happens to one request.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How badly one gateway behaves. Rates are probabilities per request (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Answers 500 without doing anything (a transient gateway error).
    #[serde(default)]
    pub error_rate: f64,
    /// Holds the request without doing anything, until the client gives up.
    #[serde(default)]
    pub timeout_rate: f64,
    /// Added to every answer, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Does what was asked (the charge happens), then holds the answer until the client gives
    /// up.
    #[serde(default)]
    pub charge_then_timeout_rate: f64,
    /// Declines a confirm for good: nothing is taken (a refused card).
    #[serde(default)]
    pub decline_rate: f64,
    /// How long a held request is held, in milliseconds (clients give up well before).
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u64,
}

fn default_hold_ms() -> u64 {
    30_000
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            timeout_rate: 0.0,
            latency_ms: 0,
            charge_then_timeout_rate: 0.0,
            decline_rate: 0.0,
            hold_ms: default_hold_ms(),
        }
    }
}

/// Longest latency or hold that may be set, in milliseconds.
pub const MAX_DELAY_MS: u64 = 120_000;

/// What one request meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Answer 500, do nothing.
    Error,
    /// Hold, do nothing.
    Timeout,
    /// Decline the confirm (a confirm only; other calls go through).
    Decline,
    /// Do it, then hold the answer.
    ChargeThenTimeout,
    /// Do it and answer.
    Through,
}

impl Faults {
    /// The fields that are out of range, as `(field, reason)`.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        let rates = [
            ("error_rate", self.error_rate),
            ("timeout_rate", self.timeout_rate),
            ("charge_then_timeout_rate", self.charge_then_timeout_rate),
            ("decline_rate", self.decline_rate),
        ];
        for (field, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                problems.push((field, "must be between 0 and 1"));
            }
        }
        if self.error_rate + self.timeout_rate + self.decline_rate > 1.0 {
            problems.push((
                "error_rate",
                "error_rate, timeout_rate and decline_rate must add up to at most 1",
            ));
        }
        if self.latency_ms > MAX_DELAY_MS {
            problems.push(("latency_ms", "must be at most 120000"));
        }
        if self.hold_ms > MAX_DELAY_MS {
            problems.push(("hold_ms", "must be at most 120000"));
        }
        problems
    }

    /// The added latency.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// How long a held request is held.
    pub fn hold(&self) -> Duration {
        Duration::from_millis(self.hold_ms)
    }

    /// Draws the fate of one request.
    pub fn draw(&self, rng: &mut impl Rng) -> Fate {
        let roll: f64 = rng.gen();
        if roll < self.error_rate {
            return Fate::Error;
        }
        if roll < self.error_rate + self.timeout_rate {
            return Fate::Timeout;
        }
        if roll < self.error_rate + self.timeout_rate + self.decline_rate {
            return Fate::Decline;
        }
        if rng.gen::<f64>() < self.charge_then_timeout_rate {
            return Fate::ChargeThenTimeout;
        }
        Fate::Through
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn no_faults_let_every_request_through() {
        let mut rng = StdRng::seed_from_u64(7);
        let faults = Faults::default();
        assert!((0..1_000).all(|_| faults.draw(&mut rng) == Fate::Through));
    }

    #[test]
    fn certain_faults_always_happen() {
        let mut rng = StdRng::seed_from_u64(7);
        for (faults, fate) in [
            (
                Faults {
                    error_rate: 1.0,
                    ..Faults::default()
                },
                Fate::Error,
            ),
            (
                Faults {
                    timeout_rate: 1.0,
                    ..Faults::default()
                },
                Fate::Timeout,
            ),
            (
                Faults {
                    decline_rate: 1.0,
                    ..Faults::default()
                },
                Fate::Decline,
            ),
            (
                Faults {
                    charge_then_timeout_rate: 1.0,
                    ..Faults::default()
                },
                Fate::ChargeThenTimeout,
            ),
        ] {
            assert!((0..100).all(|_| faults.draw(&mut rng) == fate), "{fate:?}");
        }
    }

    #[test]
    fn rates_come_out_near_their_setting() {
        let mut rng = StdRng::seed_from_u64(11);
        let faults = Faults {
            error_rate: 0.5,
            timeout_rate: 0.2,
            ..Faults::default()
        };
        let fates: Vec<Fate> = (0..10_000).map(|_| faults.draw(&mut rng)).collect();
        let errors = fates.iter().filter(|&&fate| fate == Fate::Error).count();
        let timeouts = fates.iter().filter(|&&fate| fate == Fate::Timeout).count();
        assert!((4_700..5_300).contains(&errors), "{errors} errors");
        assert!((1_800..2_200).contains(&timeouts), "{timeouts} timeouts");
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let faults = Faults {
            error_rate: 1.5,
            timeout_rate: -0.1,
            latency_ms: 500_000,
            ..Faults::default()
        };
        let fields: Vec<&str> = faults
            .problems()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(
            fields,
            ["error_rate", "timeout_rate", "error_rate", "latency_ms"]
        );
        assert!(Faults::default().problems().is_empty());
    }
}
