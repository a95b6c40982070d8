//! `hurry-loadtest`: runs drops against live Hurry Up Order servers and says whether the numbers
//! and the invariants hold.
//!
//! - [`schedule`] plans when each purchase attempt is sent (open models), or what each
//!   connection sends next (the closed loop of a sustained sale);
//! - [`runner`] sends them over a keep-alive pool and times them from their planned send time
//!   (open) or their sending (closed);
//! - [`stats`] turns the answers into HDR percentiles, per-second timelines and outcomes;
//! - [`audit`] compares what the harness saw with what the server stored (I1–I5);
//! - [`pay`] pays the drop's orders through the sandbox gateway (`drop --pay`) and audits the
//!   money (the sandbox's charges are exactly the paid orders);
//! - [`report`] and [`charts`] write the terminal summary, `report.json` and `report.html`;
//! - [`compare`] runs the same drop against one server per stock strategy;
//! - [`cpu`] says what the harness itself cost the machine during the load, and what each unit
//!   sold cost the server, PostgreSQL and Redis until they were idle again.

pub mod audit;
pub mod charts;
pub mod client;
pub mod compare;
pub mod conn;
pub mod cpu;
pub mod drop_run;
pub mod pay;
pub mod plain;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod server;
pub mod stats;
