//! The api crate's integration tests, one binary: the server and the helpers are compiled and
//! linked once, not once per file. Each module is one area over real HTTP against real stores;
//! `common` is the shared harness (`TestApp::spawn`, the test databases, Redis, SMTP).

mod common;

mod accounts;
mod bad_input;
mod bootstrap_admin;
mod cluster_sessions;
mod crash;
mod drop_faults;
mod drops;
mod event_faults;
mod event_isolation;
mod events;
mod idempotency;
mod loadtest_harness;
mod money;
mod order_life;
mod payment_faults;
mod payments;
mod provisioning;
mod relay_wake;
mod sealed_pii;
mod shop_catalog;
mod shop_orders;
mod strategies;
mod verification;
