//! The queries both backends run as they are written: one text, compiled twice.
//!
//! Each backend includes this folder as its module `sql` (`#[path = "../sql/mod.rs"]`), so
//! the code here is built once against PostgreSQL's types and once against SQLite's, with no
//! generic bounds. Placeholders are `$N` (SQLite's sqlx driver reads `$N` as the N-th bound
//! value) and times are bound from Rust ([`crate::now_micros`]), never the database's clock.
//!
//! What a backend gives the text here (in its `mod.rs`):
//! - `SqlStore`, its store type, with `reads()` (the pool for reads), `writes()` (the pool for
//!   writes: SQLite's one writer connection) and `begin_guarded()` (a transaction whose checked
//!   rows stay as read until it commits: rows locked by `FOR UPDATE` on PostgreSQL, the write
//!   lock from the start on SQLite);
//! - `FOR_UPDATE`, the clause that locks a selected row (empty on SQLite), and
//!   `FOR_NO_KEY_UPDATE`, the same lock that lets foreign-key checks on the row through;
//! - `TokenTime`, `token_time` and `from_token_time`: how the session and code tables keep a
//!   point in time (`timestamptz`, unix seconds on SQLite);
//! - `ValidAfterTime`, `valid_after_time` and `from_valid_after_time`: the same for
//!   `users.tokens_valid_after`, to the microsecond (unix microseconds on SQLite);
//! - `Db` and `DbRow`, its sqlx database and row; `BACKEND`, its name; `GREATEST`, its
//!   two-argument maximum;
//! - `uuid_param`, an event id as its `event_id` columns take it (`uuid`, text on SQLite);
//!   `JSON_TYPE`, the type a JSON payload is cast to;
//! - `enqueue_event`, the outbox insert into a [`Tx`]; `claim` and `release`, the drops claim;
//! - the per-backend methods the shared parts call where the dialects really differ (`UNNEST`
//!   against a loop of inserts, arrays against `json_each`).
//!
//! Modules, one per part of [`crate::Store`]: `cart`, `catalog`, `sessions`, `users`,
//! `verification`, `events`, `orders`, `order_life`, `payments`, `settlement`, `store` (the [`crate::Store`] basics), `comparison`, and `rows` (row
//! decoding).

pub(super) mod cart;
pub(super) mod catalog;
pub(super) mod comparison;
pub(super) mod events;
pub(super) mod order_life;
pub(super) mod orders;
pub(super) mod payments;
pub(super) mod rows;
pub(super) mod sessions;
pub(super) mod settlement;
pub(super) mod store;
pub(super) mod users;
pub(super) mod verification;

/// A write transaction that, once committed, announces the outbox rows it wrote: the relay
/// waits on the store's [`outbox_written`](crate::EventStore::outbox_written) instead of its
/// poll. `enqueue_event` and the order inserts mark it; a statement that inserts into the
/// outbox by hand calls [`Tx::wrote_outbox`].
pub(super) struct Tx<'c> {
    inner: sqlx::Transaction<'c, super::Db>,
    outbox_written: std::sync::Arc<tokio::sync::Notify>,
    wrote: bool,
}

impl<'c> Tx<'c> {
    pub(super) fn new(
        inner: sqlx::Transaction<'c, super::Db>,
        outbox_written: &std::sync::Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            inner,
            outbox_written: outbox_written.clone(),
            wrote: false,
        }
    }

    /// This transaction wrote outbox rows.
    pub(super) fn wrote_outbox(&mut self) {
        self.wrote = true;
    }

    /// Commits, then wakes the relay if outbox rows were written.
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await?;
        if self.wrote {
            self.outbox_written.notify_one();
        }
        Ok(())
    }

    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

impl super::SqlStore {
    /// Wakes the relay after a statement outside a [`Tx`] committed outbox rows.
    pub(super) fn outbox_rows_committed(&self) {
        self.outbox_written.notify_one();
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = <super::Db as sqlx::Database>::Connection;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

/// The columns of an item and its drop, from `items i LEFT JOIN drops d` (for `item_from_row`).
pub(super) const ITEM_COLUMNS: &str = "i.id, i.seller_id, i.name, i.description, i.price, \
     i.stock, i.created_at, d.opens_at, d.closes_at, d.per_user_limit, d.total_units";

/// [`crate::RELEASING_STATUSES`] as an SQL list, for `status NOT IN {RELEASING}` (a test
/// below keeps the two equal).
const RELEASING: &str = "('payment_failed', 'expired', 'cancelled', 'returned')";

#[cfg(test)]
mod tests {
    #[test]
    fn the_releasing_list_names_the_releasing_statuses() {
        let quoted: Vec<String> = crate::RELEASING_STATUSES
            .iter()
            .map(|status| format!("'{status}'"))
            .collect();
        assert_eq!(super::RELEASING, format!("({})", quoted.join(", ")));
    }
}
