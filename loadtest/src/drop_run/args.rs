//! The flags of a drop: the drop, the load to put on it, and what to measure.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use crate::report::RunConfig;
use crate::schedule::{ArrivalModel, ClosedLoop, KeyPolicy, Plan, Workload};

/// The drop and the load to put on it.
#[derive(Debug, Clone, clap::Args)]
pub struct DropArgs {
    /// Base URL of the server; several, comma-separated, share the load (cluster nodes).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    pub target: Vec<String>,
    /// Pid of the server process (on this machine), for the CPU per sale; without it the
    /// server's part is unknown (`compare` knows the servers it starts).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's PostgreSQL database: before the sale it is checkpointed (`CHECKPOINT`,
    /// which needs the privilege), so that a checkpoint the provisioning's (or an earlier
    /// run's) writes made due does not land in the CPU-per-sale window (`compare` passes the
    /// databases it creates).
    #[arg(long)]
    pub checkpoint_url: Option<String>,
    /// Email of an admin of the server (its HURRY__ADMIN__EMAIL).
    #[arg(
        long,
        env = "HURRY__ADMIN__EMAIL",
        default_value = "admin@loadtest.invalid"
    )]
    pub admin_email: String,
    /// That admin's password.
    #[arg(
        long,
        env = "HURRY__ADMIN__PASSWORD",
        default_value = "loadtest-admin-password",
        hide_env_values = true
    )]
    pub admin_password: String,
    /// Synthetic shoppers (provisioned through the admin API).
    #[arg(long, default_value_t = 1_000)]
    pub shoppers: usize,
    /// Units in the drop.
    #[arg(long, default_value_t = 100)]
    pub units: i64,
    /// Most units one shopper may hold.
    #[arg(long, default_value_t = 1)]
    pub per_user_limit: i64,
    /// Units per purchase attempt.
    #[arg(long, default_value_t = 1)]
    pub quantity: i64,
    /// How attempts arrive: planned (`constant`, `ramp`, `burst`) or, `closed`, each
    /// connection's next as soon as its last is answered, going round the shoppers.
    #[arg(long, value_enum, default_value_t = ArrivalModel::Burst)]
    pub arrival: ArrivalModel,
    /// Attempts per second on average (retries on top); default: every shopper once over the
    /// duration. Not with `--arrival closed`, where the server sets the pace.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds over which attempts arrive (closed: over which new ones start).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Most attempts in flight: the keep-alive connections to each run.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Share of attempts sent again with the same Idempotency-Key.
    #[arg(long, default_value_t = 0.02)]
    pub retry_share: f64,
    /// Which attempts carry an Idempotency-Key (each request its own): `all` (a careful
    /// client) or `retried` (only the ones sent twice).
    #[arg(long, value_enum, default_value_t = KeyPolicy::All)]
    pub keys: KeyPolicy,
    /// Milliseconds after its original that a retry is sent (closed: right after its answer).
    #[arg(long, default_value_t = 20)]
    pub retry_after_ms: u64,
    /// After the drop, pay every order it created through the sandbox gateway (as a shopper
    /// would: open, check out at the sandbox, confirm), then audit the money: the sandbox's
    /// charges are exactly the paid orders, none twice.
    #[arg(long)]
    pub pay: bool,
    /// Sandbox faults during the payments, one JSON body of `PUT /pg-sandbox/faults` per
    /// gateway, e.g. '{"provider":"toss","error_rate":0.5,"timeout_rate":0.2}' (cleared after).
    #[arg(long = "pg-faults")]
    pub pg_faults: Vec<String>,
    /// The sandbox gateway's base URL; default: the first target's `/pg-sandbox`.
    #[arg(long)]
    pub sandbox: Option<String>,
    /// Longest wait, in seconds, for the server to reconcile payments in doubt before the
    /// money audit counts.
    #[arg(long, default_value_t = 90.0)]
    pub pay_settle_secs: f64,
    /// With `--arrival burst`: share of attempts in the first second.
    #[arg(long, default_value_t = 0.5)]
    pub burst_share: f64,
    /// Longest wait, in seconds, for the server to publish its pending events (the shoppers'
    /// signups) before the load starts; 0 starts at once.
    #[arg(long, default_value_t = 120.0)]
    pub settle_secs: f64,
    /// Longest wait, in seconds, after the load for the server and its stores to be idle
    /// again (the end of the CPU-per-sale window); 0 ends the window with the load.
    #[arg(long, default_value_t = 60.0)]
    pub idle_max_secs: f64,
    /// Where report.json and report.html go.
    #[arg(long, default_value = "loadtest-report")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl DropArgs {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        if self.shoppers == 0 || self.units < 0 || self.per_user_limit < 1 || self.quantity < 1 {
            bail!("--shoppers, --per-user-limit and --quantity must be at least 1, --units at least 0");
        }
        let positive = |value: f64| value.is_finite() && value > 0.0;
        if !positive(self.duration) || self.rate.is_some_and(|rate| !positive(rate)) {
            bail!("--duration and --rate must be positive");
        }
        if !(0.0..=1.0).contains(&self.retry_share) || !(0.0..=1.0).contains(&self.burst_share) {
            bail!("--retry-share and --burst-share are between 0 and 1");
        }
        if !(self.idle_max_secs.is_finite() && self.idle_max_secs >= 0.0) {
            bail!("--idle-max-secs must be 0 or more");
        }
        if !(self.pay_settle_secs.is_finite() && self.pay_settle_secs >= 0.0) {
            bail!("--pay-settle-secs must be 0 or more");
        }
        self.pg_faults()?;
        if self.arrival == ArrivalModel::Closed && self.rate.is_some() {
            bail!("--rate plans open arrivals: a closed loop runs as fast as it is answered");
        }
        Ok(())
    }

    /// `--pg-faults` as JSON objects, each naming its provider.
    pub(super) fn pg_faults(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.pg_faults
            .iter()
            .map(|text| {
                let faults: serde_json::Value = serde_json::from_str(text)
                    .map_err(|err| anyhow::anyhow!("--pg-faults {text:?}: {err}"))?;
                if !faults["provider"].is_string() {
                    bail!("--pg-faults {text:?} names no provider");
                }
                Ok(faults)
            })
            .collect()
    }

    /// Where and how `--pay` pays.
    pub(super) fn pay_plan(&self) -> anyhow::Result<crate::pay::PayPlan> {
        let sandbox = match &self.sandbox {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{}/pg-sandbox", self.target[0].trim_end_matches('/')),
        };
        Ok(crate::pay::PayPlan {
            sandbox,
            faults: self.pg_faults()?,
            settle: Duration::from_secs_f64(self.pay_settle_secs),
            connections: self.connections,
        })
    }

    pub(super) fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    /// What the runner sends to `shoppers` shoppers.
    pub(super) fn workload(&self, shoppers: usize) -> Workload {
        if self.arrival == ArrivalModel::Closed {
            return Workload::Closed(ClosedLoop {
                shoppers,
                duration: self.duration(),
                retry_share: self.retry_share,
            });
        }
        let plan = Plan {
            model: self.arrival,
            requests: match self.rate {
                Some(rate) => (rate * self.duration).round().max(1.0) as usize,
                None => shoppers,
            },
            shoppers,
            duration: self.duration(),
            retry_share: self.retry_share,
            retry_after: Duration::from_millis(self.retry_after_ms),
            burst_share: self.burst_share,
        };
        Workload::Open(plan.arrivals())
    }

    /// The report's record of this run: `requests` logical requests were sent (planned, or
    /// as many as a closed loop got answered), to the server of `strategy`.
    pub(super) fn run_config(
        &self,
        strategy: Option<String>,
        item_id: i64,
        shoppers: usize,
        requests: usize,
    ) -> RunConfig {
        RunConfig {
            targets: self.target.clone(),
            server_pid: self.server_pid,
            strategy,
            item_id,
            shoppers,
            units: self.units,
            per_user_limit: self.per_user_limit,
            quantity: self.quantity,
            arrival: self.arrival,
            rate: requests as f64 / self.duration,
            duration_s: self.duration,
            connections: self.connections,
            retry_share: self.retry_share,
            keys: self.keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        drop: DropArgs,
    }

    fn parse(flags: &[&str]) -> DropArgs {
        let argv = std::iter::once("drop").chain(flags.iter().copied());
        Flags::try_parse_from(argv).expect("valid flags").drop
    }

    #[test]
    fn a_closed_loop_is_a_workload_of_its_own_and_takes_no_rate() {
        let args = parse(&[
            "--arrival",
            "closed",
            "--duration",
            "30",
            "--retry-share",
            "0",
        ]);
        args.check().expect("valid");

        let Workload::Closed(closed) = args.workload(200) else {
            panic!("not a closed loop");
        };

        assert_eq!(
            closed,
            ClosedLoop {
                shoppers: 200,
                duration: Duration::from_secs(30),
                retry_share: 0.0,
            }
        );
        let with_rate = parse(&["--arrival", "closed", "--rate", "100"]);
        assert!(with_rate.check().is_err());
    }

    #[test]
    fn an_open_plan_has_its_rate_times_its_duration_of_requests() {
        let args = parse(&["--arrival", "constant", "--rate", "40", "--duration", "2"]);

        let Workload::Open(arrivals) = args.workload(10) else {
            panic!("not a plan");
        };

        // 80 requests, 2 % of them (one) sent twice.
        assert_eq!(arrivals.len(), 81);
        assert_eq!(args.server_pid, None);
        assert_eq!(parse(&["--server-pid", "4242"]).server_pid, Some(4242));
    }

    #[test]
    fn the_idle_wait_may_be_zero_but_not_negative() {
        assert!(parse(&["--idle-max-secs", "0"]).check().is_ok());
        assert!(parse(&["--idle-max-secs=-1"]).check().is_err());
    }
}
