//! CPU time from `/proc` (Linux; elsewhere nothing is reported), for two measures:
//!
//! - [`instrument`]: what the harness itself cost the machine during the load;
//! - [`per_sale`]: what a sold unit cost the server and its stores, from the first attempt's
//!   send until they are idle again (so deferred work, relaying and consuming the sale's
//!   events, counts), the headline of a comparison on a machine the harness shares;
//! - [`parties`]: the server, PostgreSQL and Redis processes, sampled together;
//! - [`idle`]: when they are idle again after the load;
//! - [`proc_stat`]: one process's `/proc/PID/stat`.

pub mod idle;
pub mod instrument;
pub mod parties;
pub mod per_sale;
pub mod proc_stat;

pub use idle::{until_idle, IdleRule, Settled, Settling};
pub use instrument::{between, snapshot, InstrumentUse, Snapshot};
pub use parties::{Parties, Ticks};
pub use per_sale::{CpuPerSale, SaleWindow};
pub use proc_stat::ProcStat;

/// `/proc` counts CPU time in `USER_HZ` ticks, 100 per second on every Linux ABI.
const TICKS_PER_S: f64 = 100.0;
