//! Conformance suite of the [`Store`](hurry_persistence::Store) trait: every scenario runs on a
//! fresh SQLite file and on a fresh PostgreSQL database (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), as `<scenario>::sqlite` and
//! `<scenario>::postgres`, so both backends are held to one behaviour.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod announce;
mod basics;
mod catalog;
mod comparison;
mod events;
mod orders;
mod pool;
mod relay;
mod sealed;
mod sessions;
mod settle;
mod shop;
mod verification;

use anyhow::{ensure, Context, Result};
use chrono::{Duration, Utc};
use hurry_persistence::{
    Backend, DropSales, IdempotencyRecord, NewOrder, OrderRecord, StoreError, RELEASING_STATUSES,
};

use common::*;
