//! The HTTP API of Hurry Up Order and the `hurry` binary's library.
//!
//! `main.rs` parses arguments, loads [`settings::Settings`], and runs a
//! [`startup::Application`]. Modules:
//! - [`settings`]: layered configuration.
//! - [`startup`]: building the store, engine and router; serving.
//! - [`bootstrap`]: the bootstrap admin, which an existing account cannot claim.
//! - [`routes`]: one module per resource, merged in [`routes::router`].
//! - [`catalog`]: the in-memory catalogue cache.
//! - [`auth`]: password hashing, access tokens, role extractors.
//! - [`extract`]: extractors whose rejections use the error schema.
//! - [`error`]: [`error::ApiError`]; [`error::ErrorCode`] gives each code its status.
//! - [`events`]: the event bus, outbox relay and consumers of this server.
//! - [`idempotency`]: `Idempotency-Key` coalescing and replay.
//! - [`mail`]: the `Mailer` (SMTP, or the file mailbox of the embedded default).
//! - [`verification`]: email codes and the consumer that mails them.
//! - [`payments`]: gateway clients, the mounted sandbox and the payment workers, set up.
//! - [`pg_sandbox`]: the sandbox gateway (Toss and NicePay shapes, faults, ledger).
//! - [`pii`]: encryption of personal data and the email blind index.
//! - [`rate_limit`]: per-address, per-account and per-user limits.
//! - [`views`]: JSON answer shapes.
//! - [`telemetry`]: logs and metrics.

pub mod auth;
pub mod bootstrap;
pub mod catalog;
pub mod error;
pub mod events;
pub mod extract;
pub mod idempotency;
pub mod mail;
pub mod payments;
pub mod pg_sandbox;
pub mod pii;
pub mod rate_limit;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod verification;
pub mod views;
