//! When the outbox relay runs: woken by the store's announcement of every commit that wrote
//! outbox rows, not by its poll.

use std::time::Duration;

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

mod the_relay_wakes_on_every_outbox_write {
    use crate::common::{Bus, Store};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_local() {
        super::the_relay_wakes_on_every_outbox_write(Store::Sqlite, Bus::Local).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_local() {
        super::the_relay_wakes_on_every_outbox_write(Store::Postgres, Bus::Local).await
    }
}

/// With the relay's poll an hour apart, events written through the shop (an item created and
/// edited, its stock changed: writes whose handlers never mention the relay) are relayed at
/// once: the store announces its outbox commits.
async fn the_relay_wakes_on_every_outbox_write(store: Store, bus: Bus) {
    // Arrange
    let app = TestApp::spawn_on(store, bus, None, &["[events]\nrelay_poll_ms = 3600000\n"]).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let unpublished = || async {
        app.db
            .raw()
            .await
            .scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .await
    };
    eventually("the boot's events relayed", WAIT, || async {
        (unpublished().await == 0).then_some(())
    })
    .await;

    // Act
    let item = app.general_item(&seller, "Tee", 19_000, 5).await;
    let (renamed, _) = app
        .send(
            Method::PATCH,
            &format!("/api/v1/items/{item}"),
            Some(&seller),
            Some(json!({ "name": "Renamed" })),
            None,
        )
        .await;
    let (restocked, _) = app
        .send(
            Method::POST,
            &format!("/api/v1/items/{item}/stock"),
            Some(&seller),
            Some(json!({ "delta": 3 })),
            None,
        )
        .await;

    // Assert
    assert_eq!((renamed, restocked), (StatusCode::OK, StatusCode::OK));
    eventually("the item's events relayed without a poll", WAIT, || async {
        (unpublished().await == 0).then_some(())
    })
    .await;
    let relayed = app
        .db
        .raw()
        .await
        .scalar(&format!(
            "SELECT COUNT(*) FROM outbox WHERE aggregate_id = {item} \
             AND event_type IN ('item.created', 'item.updated', 'item.stock_adjusted') \
             AND published_at IS NOT NULL"
        ))
        .await;
    assert_eq!(relayed, 3);
}
