//! PostgreSQL connections that the server ended (a restart, a failover, an administrator)
//! while they sat in the pool: a connection idle for `ping_idle_after` is pinged and replaced
//! before use; a busier one is handed out as it is (no round trip per query), so its next
//! query fails. PostgreSQL only: SQLite has no server to lose.

use std::time::Duration;

use anyhow::Result;
use hurry_persistence::Backend;

use crate::common::TestStore;

/// A store with one connection that was used, then ended by the server.
async fn store_whose_pooled_connections_were_ended(ping_idle_after: Duration) -> Result<TestStore> {
    let db = TestStore::open_with(Backend::Postgres, |options| {
        options.ping_idle_after = ping_idle_after;
    })
    .await?;
    db.setting_or_init("pool_test", "before").await?;
    // Every other session of this database: the store's (and idle ones of the raw pool,
    // which pings and replaces them). The timeout waits until they are gone.
    let ended = db
        .count(
            // OFFSET 0 keeps the filter from being planned after the termination.
            "SELECT COUNT(*) FROM (SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() OFFSET 0) s \
             WHERE pg_terminate_backend(s.pid, 5000)",
        )
        .await?;
    assert!(ended >= 1, "the store had no connection to end");
    Ok(db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_server_ended_is_replaced_before_use() -> Result<()> {
    // Arrange: every connection counts as idle long enough to be pinged.
    let db = store_whose_pooled_connections_were_ended(Duration::ZERO).await?;

    // Act
    let value = db.setting_or_init("pool_test", "after").await;

    // Assert
    assert_eq!(value?, "before");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recently_used_connection_is_not_pinged_so_its_end_shows() -> Result<()> {
    // Arrange: no connection has been idle long enough to be pinged.
    let db = store_whose_pooled_connections_were_ended(Duration::from_secs(3600)).await?;

    // Act: each dead connection fails its query and is dropped; the pool holds at most 4.
    let mut results = Vec::new();
    for _ in 0..10 {
        let result = db.setting_or_init("pool_test", "after").await;
        let done = result.is_ok();
        results.push(result);
        if done {
            break;
        }
    }

    // Assert: the first query met the ended connection; the pool recovered by itself.
    assert!(results[0].is_err(), "{results:?}");
    assert_eq!(results.pop().unwrap()?, "before", "{results:?}");
    Ok(())
}
