//! When the server and its stores are idle again after the load: the window of the CPU per
//! sale ends there, so the work a sale leaves behind (relaying its events, the consumers
//! applying them) is charged to it.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::{Ticks, TICKS_PER_S};

/// When the parties count as idle again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleRule {
    /// How often they are sampled.
    pub poll: Duration,
    /// How far back from the latest sample their CPU is measured.
    pub quiet: Duration,
    /// CPU over `quiet` below which they are idle, in cores (0.03: 3 % of one core; over
    /// 500 ms that is 1.5 ticks, so at most one tick).
    pub max_cores: f64,
    /// Longest wait after the load ends.
    pub cap: Duration,
}

impl IdleRule {
    /// Polls every 100 ms; idle below 3 % of one core over the last 500 ms; gives up at `cap`.
    pub fn capped(cap: Duration) -> Self {
        Self {
            poll: Duration::from_millis(100),
            quiet: Duration::from_millis(500),
            max_cores: 0.03,
            cap,
        }
    }

    /// What `samples` say: (time since the load ended, ticks of the known parties together),
    /// oldest first. Idle when the CPU from the latest sample back to the newest one at least
    /// `quiet` older is below `max_cores`; otherwise busy until the latest is `cap` old.
    pub fn settling(&self, samples: &[(Duration, u64)]) -> Settling {
        let Some(&(now, ticks)) = samples.last() else {
            return Settling::Busy;
        };
        let earlier = now
            .checked_sub(self.quiet)
            .and_then(|since| samples.iter().rev().find(|(at, _)| *at <= since));
        if let Some(&(at, before)) = earlier {
            let cpu_s = ticks.saturating_sub(before) as f64 / TICKS_PER_S;
            if cpu_s < self.max_cores * (now - at).as_secs_f64() {
                return Settling::Idle;
            }
        }
        if now >= self.cap {
            Settling::GaveUp
        } else {
            Settling::Busy
        }
    }
}

/// The verdict of [`IdleRule::settling`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settling {
    /// Still working (or not watched for long enough yet).
    Busy,
    /// Idle again: the window ends.
    Idle,
    /// Not idle within the cap: the window ends anyway.
    GaveUp,
}

/// Where the window ended.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// The parties' ticks at the end.
    pub ticks: Ticks,
    /// When that sample was taken.
    pub at: Instant,
    /// Whether they were idle again before the cap.
    pub idle_reached: bool,
}

/// Samples the parties with `sample` now and every `rule.poll` after until the rule says
/// idle or gives up; `None` when a sample fails (no `/proc`).
pub async fn until_idle(
    rule: &IdleRule,
    mut sample: impl FnMut() -> Option<Ticks>,
) -> Option<Settled> {
    let started = Instant::now();
    let mut polls = tokio::time::interval(rule.poll);
    polls.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    loop {
        polls.tick().await;
        let ticks = sample()?;
        let at = Instant::now();
        samples.push((at - started, ticks.known_total()));
        let verdict = rule.settling(&samples);
        if verdict != Settling::Busy {
            return Some(Settled {
                ticks,
                at,
                idle_reached: verdict == Settling::Idle,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> IdleRule {
        IdleRule::capped(Duration::from_secs(60))
    }

    /// Samples every 100 ms with these tick totals.
    fn every_100_ms(totals: &[u64]) -> Vec<(Duration, u64)> {
        totals
            .iter()
            .enumerate()
            .map(|(n, total)| (Duration::from_millis(100 * n as u64), *total))
            .collect()
    }

    #[test]
    fn half_a_second_with_at_most_a_tick_is_idle() {
        // Busy (10 ticks per 100 ms: a whole core), then one tick in the last 500 ms.
        let samples = every_100_ms(&[0, 10, 20, 30, 30, 30, 31, 31, 31]);

        let verdicts: Vec<Settling> = (1..=samples.len())
            .map(|n| rule().settling(&samples[..n]))
            .collect();

        let busy = Settling::Busy;
        assert_eq!(verdicts[..8], [busy; 8]);
        assert_eq!(verdicts[8], Settling::Idle);
    }

    #[test]
    fn two_ticks_in_half_a_second_are_not_idle() {
        // 2 ticks in 500 ms is 4 % of a core: above the 3 %.
        let samples = every_100_ms(&[0, 0, 1, 1, 2, 2]);
        assert_eq!(rule().settling(&samples), Settling::Busy);
        let samples = every_100_ms(&[0, 0, 1, 1, 1, 1]);
        assert_eq!(rule().settling(&samples), Settling::Idle);
    }

    #[test]
    fn less_than_the_quiet_span_of_samples_is_not_yet_idle() {
        // Nothing used, but only 400 ms watched.
        assert_eq!(rule().settling(&every_100_ms(&[5; 5])), Settling::Busy);
        assert_eq!(rule().settling(&[]), Settling::Busy);
    }

    #[test]
    fn uneven_samples_measure_back_to_the_newest_at_least_quiet_old() {
        // A late poll: the last 500 ms reach back to the sample at 0.3 s, not the one at 0.5 s.
        let samples = [
            (Duration::from_millis(0), 0),
            (Duration::from_millis(300), 40),
            (Duration::from_millis(500), 41),
            (Duration::from_millis(850), 41),
        ];
        assert_eq!(rule().settling(&samples), Settling::Idle);
        let samples = [(Duration::from_millis(300), 40), (samples[3].0, 44)];
        assert_eq!(rule().settling(&samples), Settling::Busy);
    }

    #[test]
    fn busy_at_the_cap_gives_up() {
        let mut short = rule();
        short.cap = Duration::from_millis(700);
        let samples = every_100_ms(&[0, 10, 20, 30, 40, 50, 60, 70]);
        assert_eq!(short.settling(&samples[..7]), Settling::Busy);
        assert_eq!(short.settling(&samples), Settling::GaveUp);
        // No wait at all: the first sample ends the window, not idle.
        short.cap = Duration::ZERO;
        assert_eq!(short.settling(&samples[..1]), Settling::GaveUp);
    }

    /// A fake of the parties: `per_poll` ticks per sample until sample `busy_polls`, then none.
    fn fake(busy_polls: u64, per_poll: u64) -> impl FnMut() -> Option<Ticks> {
        let mut polls = 0u64;
        move || {
            polls += 1;
            let total = polls.min(busy_polls) * per_poll;
            Some(Ticks {
                server: Some(total),
                postgres: Some(1_000),
                redis: None,
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_ends_half_a_second_after_the_work() {
        let started = Instant::now();

        let settled = until_idle(&rule(), fake(20, 5)).await.expect("samples");

        // Busy for the first 20 samples (until 1.9 s), quiet from there: idle at 2.4 s.
        assert!(settled.idle_reached);
        assert_eq!(settled.at - started, Duration::from_millis(2_400));
        assert_eq!(settled.ticks.server, Some(100));
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_gives_up_at_the_cap() {
        let started = Instant::now();

        let settled = until_idle(&IdleRule::capped(Duration::from_secs(3)), fake(u64::MAX, 5))
            .await
            .expect("samples");

        assert!(!settled.idle_reached);
        assert_eq!(settled.at - started, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn no_proc_is_no_window() {
        assert!(until_idle(&rule(), || None).await.is_none());
    }
}
