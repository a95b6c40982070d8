//! Settling writes in doubt, and the drops claim that lets one process per store sell drops.

use sqlx::Connection as _;

use super::*;

on_both_backends!(
    settle_orders_answers_which_of_the_ids_are_stored,
    a_second_handle_cannot_claim_the_drops_until_the_first_gives_them_up,
);

async fn settle_orders_answers_which_of_the_ids_are_stored(backend: Backend) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    db.commit_orders(&[
        order(3, 7, "pending_payment", &[(10, 1)]),
        order(5, 7, "pending_payment", &[(10, 1)]),
    ])
    .await?;

    // Act
    let stored = db.settle_orders(&[2, 3, 4, 5, 6]).await?;
    let none = db.settle_orders(&[]).await?;

    // Assert
    assert_eq!(stored, vec![3, 5]);
    assert!(none.is_empty());
    Ok(())
}

async fn a_second_handle_cannot_claim_the_drops_until_the_first_gives_them_up(
    backend: Backend,
) -> Result<()> {
    // Arrange
    let db = TestStore::open(backend).await?;
    let other = db.second_handle().await?;

    // Act
    let first = db.claim_drops().await?;
    let again = db.claim_drops().await?;
    let second_while_held = other.claim_drops().await?;
    db.release_drops().await;
    let mut second_after = false;
    for _ in 0..100 {
        // PostgreSQL ends the released session's lock a moment after the close.
        if other.claim_drops().await? {
            second_after = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let first_again = db.claim_drops().await?;

    // Assert
    assert!(first, "the first handle claims the drops");
    assert!(again, "claiming again while holding is fine");
    assert!(!second_while_held, "one claim per store");
    assert!(second_after, "a released claim can be taken");
    assert!(!first_again, "now the second handle holds it");
    other.release_drops().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claiming_the_drops_ends_the_batch_writes_an_earlier_holder_left_running() -> Result<()> {
    // Arrange: a batch-writing session of a process that died, still running its statement.
    let db = TestStore::open(Backend::Postgres).await?;
    let options: sqlx::postgres::PgConnectOptions = db.url().parse()?;
    let mut orphan =
        sqlx::PgConnection::connect_with(&options.application_name("hurry-writer")).await?;
    let orphan_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut orphan)
        .await?;
    let running = tokio::spawn(async move {
        sqlx::query("SELECT pg_sleep(30)")
            .execute(&mut orphan)
            .await
            .map(drop)
    });
    let started = tokio::time::Instant::now();
    while db
        .count(&format!(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {orphan_pid} AND state = 'active'"
        ))
        .await?
        == 0
    {
        ensure!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "never active"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // Act
    let claimed = db.claim_drops().await?;

    // Assert
    assert!(claimed);
    let left = db
        .count(&format!(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {orphan_pid}"
        ))
        .await?;
    assert_eq!(
        left, 0,
        "the earlier writer's backend is gone before the claim returns"
    );
    assert!(running.await?.is_err(), "its statement was cut short");
    db.release_drops().await;
    Ok(())
}
