//! The catalogue over real HTTP on both stores: item changes and ownership, paging, the
//! catalogue cache, stock adjustments of general items and drops.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

both_stores!(
    only_the_owner_changes_or_deletes_an_item_and_reads_see_it_at_once,
    listing_pages_have_their_edges_and_limits,
    stock_adjustments_hold_their_floor_and_added_drop_units_sell_at_once,
);

async fn only_the_owner_changes_or_deletes_an_item_and_reads_see_it_at_once(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, owner) = app.seller("owner@hurry.test").await;
    let (_, rival) = app.seller("rival@hurry.test").await;
    let (_, customer) = app.new_user("customer@hurry.test").await;
    let id = app.general_item(&owner, "Sneaker", 1_000, 5).await;
    let (_, cached) = app.item(id).await;
    let (status, first_order) = app
        .order(&customer, json!([{"item_id": id, "quantity": 1}]), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first_order}");
    let path = format!("/api/v1/items/{id}");
    let patch = |token: &str, body: Value| {
        let (app, path, token) = (&app, path.clone(), token.to_owned());
        async move {
            app.send(Method::PATCH, &path, Some(&token), Some(body), None)
                .await
        }
    };

    // Act
    let (by_rival, rival_body) = patch(&rival, json!({"price": 1})).await;
    let (by_customer, customer_body) = patch(&customer, json!({"price": 1})).await;
    let (bad, bad_body) = patch(&owner, json!({"price": -5, "name": ""})).await;
    let (by_owner, owner_body) = patch(&owner, json!({"price": 2_000, "name": "Renamed"})).await;
    let (_, read_back) = app.item(id).await;
    let (delete_rival, delete_rival_body) = app
        .send(Method::DELETE, &path, Some(&rival), None, None)
        .await;
    let (delete_owner, _) = app
        .send(Method::DELETE, &path, Some(&owner), None, None)
        .await;
    let (gone, gone_body) = app.item(id).await;
    let order_id = first_order["id"].as_i64().unwrap();
    let (_, kept_order) = app
        .get(&format!("/api/v1/orders/{order_id}"), Some(&customer))
        .await;

    // Assert
    assert_eq!(
        (cached["price"].as_i64(), cached["stock_available"].as_i64()),
        (Some(1_000), Some(5))
    );
    assert_error(by_rival, &rival_body, 404, "not_found");
    assert_error(by_customer, &customer_body, 403, "forbidden");
    assert_error(bad, &bad_body, 422, "validation_failed");
    assert_eq!(by_owner, StatusCode::OK, "{owner_body}");
    assert_eq!(
        read_back["price"], 2_000,
        "the cache was cleared: {read_back}"
    );
    assert_eq!(read_back["name"], "Renamed");
    assert_eq!(
        read_back["stock_available"], 4,
        "the order's unit is gone at once"
    );
    assert_error(delete_rival, &delete_rival_body, 404, "not_found");
    assert_eq!(delete_owner, StatusCode::NO_CONTENT);
    assert_error(gone, &gone_body, 404, "not_found");
    assert_eq!(
        kept_order["lines"][0]["item_id"], id,
        "orders outlive the item"
    );
    assert_eq!(kept_order["lines"][0]["unit_price"], 1_000);
}

async fn listing_pages_have_their_edges_and_limits(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    for index in 0..5 {
        app.general_item(&seller, &format!("Item {index}"), 100, 1)
            .await;
    }

    // Act
    let page = |query: &'static str| {
        let app = &app;
        async move { app.get(&format!("/api/v1/items?{query}"), None).await }
    };
    let (_, first) = page("page=0&size=2").await;
    let (_, last) = page("page=2&size=2").await;
    let (_, beyond) = page("page=3&size=2").await;
    let (_, default) = page("").await;
    let refused = [
        page("size=0").await,
        page("size=101").await,
        page("page=-1").await,
        page("size=abc").await,
    ];

    // Assert
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["total"], 5);
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(beyond["items"], json!([]));
    assert_eq!(beyond["total"], 5);
    assert_eq!(default["size"], 20);
    assert_eq!(default["items"].as_array().unwrap().len(), 5);
    for (status, body) in &refused[..3] {
        assert_error(*status, body, 422, "validation_failed");
    }
    assert_eq!(refused[3].0.as_u16() / 100, 4, "{:?}", refused[3]);
}

async fn stock_adjustments_hold_their_floor_and_added_drop_units_sell_at_once(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let (_, rival) = app.seller("rival@hurry.test").await;
    let general = app.general_item(&seller, "Sock", 500, 3).await;
    let drop = app.open_drop(&seller, 1, 5).await;
    let buyers = app.many_users("buyer", 3).await;
    assert_eq!(
        app.purchase(&buyers[0].1, drop, 1, None).await.0,
        StatusCode::CREATED
    );
    let adjust = |id: i64, token: &str, delta: i64| {
        let app = &app;
        let token = token.to_owned();
        async move {
            app.post(
                &format!("/api/v1/items/{id}/stock"),
                Some(&token),
                json!({"delta": delta}),
            )
            .await
        }
    };

    // Act
    let (added, added_body) = adjust(general, &seller, 4).await;
    let (too_low, too_low_body) = adjust(general, &seller, -8).await;
    let (by_rival, rival_body) = adjust(general, &rival, 1).await;
    let (zero, zero_body) = adjust(general, &seller, 0).await;
    let (sold_out, _) = app.purchase(&buyers[1].1, drop, 1, None).await;
    let (below_sold, below_sold_body) = adjust(drop, &seller, -1).await;
    let (grown, grown_body) = adjust(drop, &seller, 2).await;
    let (after_growth, after_growth_body) = app.purchase(&buyers[1].1, drop, 1, None).await;
    let (shrunk, shrunk_body) = adjust(drop, &seller, -1).await;
    let (after_shrink, _) = app.purchase(&buyers[2].1, drop, 1, None).await;

    // Assert
    assert_eq!(added, StatusCode::OK, "{added_body}");
    assert_eq!(added_body["stock_available"], 7);
    assert_error(too_low, &too_low_body, 409, "insufficient_stock");
    assert_error(by_rival, &rival_body, 404, "not_found");
    assert_error(zero, &zero_body, 422, "validation_failed");
    assert_eq!(app.item(general).await.1["stock_available"], 7);
    assert_eq!(sold_out, StatusCode::CONFLICT);
    assert_error(below_sold, &below_sold_body, 409, "insufficient_stock");
    assert_eq!(grown, StatusCode::OK, "{grown_body}");
    assert_eq!(grown_body["drop"]["total_units"], 3);
    assert_eq!(
        after_growth,
        StatusCode::CREATED,
        "added units sell at once: {after_growth_body}"
    );
    assert_eq!(shrunk, StatusCode::OK, "{shrunk_body}");
    assert_eq!(
        after_shrink,
        StatusCode::CONFLICT,
        "the removed unit is not for sale"
    );
    let raw = app.db.raw().await;
    let (units, _, _, _) = raw.sales_of(drop).await;
    let total = raw
        .scalar(&format!(
            "SELECT total_units FROM drops WHERE item_id = {drop}"
        ))
        .await;
    assert_eq!(
        (units, total),
        (2, 2),
        "sold never exceeds the drop's units"
    );
}
