//! General orders, cart and wishlist over real HTTP on both stores: all or nothing,
//! concurrency, 1,000 lines, bad lines, idempotency, ordering from the cart and the wishlist.

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

both_stores!(
    five_hundred_buyers_of_fifty_units_get_exactly_fifty,
    an_order_with_one_short_line_reserves_nothing,
    bad_order_lines_are_refused_and_change_nothing,
    a_thousand_line_order_is_placed_and_reads_back_whole,
    a_repeated_order_with_its_key_answers_the_first_order,
    the_cart_keeps_quantities_and_ordering_from_it_removes_the_ordered_lines,
    the_wishlist_is_idempotent_and_orders_only_listed_items,
    deleting_the_account_empties_cart_and_wishlist,
);

async fn five_hundred_buyers_of_fifty_units_get_exactly_fifty(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let id = app.general_item(&seller, "Popular", 1_000, 50).await;
    let buyers = app.many_users("buyer", 500).await;
    let (_, before) = app.item(id).await; // now in the cache

    // Act
    let answers: Vec<StatusCode> = {
        use futures::StreamExt;
        futures::stream::iter(&buyers)
            .map(|(_, token)| {
                let app = &app;
                async move {
                    app.order(token, json!([{"item_id": id, "quantity": 1}]), None)
                        .await
                        .0
                }
            })
            .buffer_unordered(200)
            .collect()
            .await
    };

    // Assert
    let created = answers
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, refused), (50, 450));
    let raw = app.db.raw().await;
    assert_eq!(raw.sales_of(id).await.0, 50);
    assert_eq!(
        raw.scalar(&format!("SELECT stock FROM items WHERE id = {id}"))
            .await,
        0
    );
    assert_eq!(before["stock_available"], 50);
    assert_eq!(
        app.item(id).await.1["stock_available"],
        0,
        "orders clear the cache"
    );
}

async fn an_order_with_one_short_line_reserves_nothing(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let a = app.general_item(&seller, "A", 100, 5).await;
    let b = app.general_item(&seller, "B", 200, 5).await;
    let c = app.general_item(&seller, "C", 300, 1).await;

    // Act
    let lines = json!([{"item_id": a, "quantity": 2}, {"item_id": b, "quantity": 2}, {"item_id": c, "quantity": 2}]);
    let (status, body) = app.order(&buyer, lines, None).await;

    // Assert
    assert_error(status, &body, 409, "insufficient_stock");
    for (id, stock) in [(a, 5), (b, 5), (c, 1)] {
        assert_eq!(app.item(id).await.1["stock_available"], stock);
    }
    assert_eq!(app.db.raw().await.order_ids().await, Vec::<i64>::new());
}

async fn bad_order_lines_are_refused_and_change_nothing(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let id = app.general_item(&seller, "A", 100, 5).await;
    let drop = app.open_drop(&seller, 5, 5).await;
    let too_many: Vec<Value> = (0..1_001)
        .map(|n| json!({"item_id": n + 1, "quantity": 1}))
        .collect();
    let line = |quantity: Value| json!([{"item_id": id, "quantity": quantity}]);

    // Act
    let cases = vec![
        (
            app.order(&buyer, line(json!(0)), None).await,
            422,
            "validation_failed",
        ),
        (
            app.order(&buyer, line(json!(-1)), None).await,
            422,
            "validation_failed",
        ),
        (
            app.order(&buyer, line(json!(10_001)), None).await,
            422,
            "validation_failed",
        ),
        (
            app.order(&buyer, line(json!("two")), None).await,
            422,
            "validation_failed",
        ),
        (
            app.order(&buyer, json!([]), None).await,
            422,
            "validation_failed",
        ),
        (
            app.order(&buyer, json!(too_many), None).await,
            422,
            "validation_failed",
        ),
        (
            app.order(
                &buyer,
                json!([{"item_id": id, "quantity": 1}, {"item_id": id, "quantity": 2}]),
                None,
            )
            .await,
            422,
            "validation_failed",
        ),
        (
            app.order(&buyer, json!([{"item_id": drop, "quantity": 1}]), None)
                .await,
            422,
            "drop_item_in_order",
        ),
        (
            app.order(&buyer, json!([{"item_id": 987_654, "quantity": 1}]), None)
                .await,
            404,
            "not_found",
        ),
    ];
    let (anonymous, _) = app
        .post(
            "/api/v1/orders",
            None,
            json!({"lines": [{"item_id": id, "quantity": 1}]}),
        )
        .await;

    // Assert
    for ((status, body), expected, code) in &cases {
        assert_error(*status, body, *expected, code);
    }
    assert_eq!(anonymous, StatusCode::UNAUTHORIZED);
    assert_eq!(app.item(id).await.1["stock_available"], 5);
    assert_eq!(app.stock_of(drop).await, 5);
    assert_eq!(app.db.raw().await.order_ids().await, Vec::<i64>::new());
}

async fn a_thousand_line_order_is_placed_and_reads_back_whole(store: Store) {
    // Arrange: 1,000 items, created straight in the store (the API path is tested above).
    let app = TestApp::spawn(store).await;
    let (seller_id, _) = app.seller("seller@hurry.test").await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let mut ids = Vec::new();
    for index in 0..1_000 {
        let created = app
            .state
            .store
            .create_item(&hurry_persistence::NewItem {
                seller_id,
                name: format!("Item {index}"),
                description: String::new(),
                price: 100 + index,
                stock: 3,
                drop: None,
            })
            .await
            .unwrap();
        ids.push(created.id);
    }
    let lines: Vec<Value> = ids
        .iter()
        .map(|id| json!({"item_id": id, "quantity": 2}))
        .collect();

    // Act
    let (status, body) = app.order(&buyer, json!(lines), Some("big-order")).await;

    // Assert
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let (_, stored) = app.get(&format!("/api/v1/orders/{id}"), Some(&buyer)).await;
    let stored_lines = stored["lines"].as_array().unwrap();
    assert_eq!(stored_lines.len(), 1_000);
    let expected: i64 = (0..1_000).map(|index| 2 * (100 + index)).sum();
    assert_eq!(stored["amount"], expected, "server prices");
    assert_eq!(stored_lines[999]["item_id"], ids[999]);
    assert_eq!(app.item(ids[500]).await.1["stock_available"], 1);
}

async fn a_repeated_order_with_its_key_answers_the_first_order(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let id = app.general_item(&seller, "A", 100, 5).await;
    let lines = json!([{"item_id": id, "quantity": 2}]);

    // Act
    let first = app.order(&buyer, lines.clone(), Some("k-1")).await;
    let again = app.order(&buyer, lines, Some("k-1")).await;
    let other = app
        .order(&buyer, json!([{"item_id": id, "quantity": 1}]), Some("k-1"))
        .await;

    // Assert
    assert_eq!(first.0, StatusCode::CREATED);
    assert_eq!(again, first, "the same answer");
    assert_error(other.0, &other.1, 422, "idempotency_mismatch");
    assert_eq!(
        app.item(id).await.1["stock_available"],
        3,
        "one order's worth taken"
    );
}

async fn the_cart_keeps_quantities_and_ordering_from_it_removes_the_ordered_lines(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let a = app.general_item(&seller, "A", 100, 10).await;
    let b = app.general_item(&seller, "B", 200, 10).await;
    let c = app.general_item(&seller, "C", 300, 10).await;
    let put = |id: i64, quantity: Value| {
        let app = &app;
        let buyer = buyer.clone();
        async move {
            app.send(
                Method::PUT,
                &format!("/api/v1/cart/items/{id}"),
                Some(&buyer),
                Some(json!({"quantity": quantity})),
                None,
            )
            .await
        }
    };

    // Act
    put(a, json!(1)).await;
    let (_, replaced) = put(a, json!(3)).await;
    put(b, json!(2)).await;
    put(c, json!(1)).await;
    let (removed_by_zero, _) = put(c, json!(0)).await;
    let (unknown, unknown_body) = put(987_654, json!(1)).await;
    let (negative, negative_body) = put(a, json!(-1)).await;
    app.send(
        Method::PATCH,
        &format!("/api/v1/items/{b}"),
        Some(&seller),
        Some(json!({"price": 250})),
        None,
    )
    .await;
    let (_, cart) = app.get("/api/v1/cart", Some(&buyer)).await;
    let (ordered, order_body) = app
        .post(
            "/api/v1/orders/from-cart",
            Some(&buyer),
            json!({"item_ids": [b]}),
        )
        .await;
    let (_, after) = app.get("/api/v1/cart", Some(&buyer)).await;
    let (not_in_cart, not_in_cart_body) = app
        .post(
            "/api/v1/orders/from-cart",
            Some(&buyer),
            json!({"item_ids": [c]}),
        )
        .await;
    let (all, _) = app
        .post("/api/v1/orders/from-cart", Some(&buyer), json!({}))
        .await;
    let (empty, empty_body) = app
        .post("/api/v1/orders/from-cart", Some(&buyer), json!({}))
        .await;

    // Assert
    assert_eq!(replaced["lines"][0]["quantity"], 3);
    assert_eq!(removed_by_zero, StatusCode::OK);
    assert_error(unknown, &unknown_body, 404, "not_found");
    assert_error(negative, &negative_body, 422, "validation_failed");
    let lines: Vec<(i64, i64, i64)> = cart["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["item_id"].as_i64().unwrap(),
                line["quantity"].as_i64().unwrap(),
                line["price"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines, [(a, 3, 100), (b, 2, 250)], "current prices");
    assert_eq!(cart["amount"], 3 * 100 + 2 * 250);
    assert_eq!(ordered, StatusCode::CREATED, "{order_body}");
    assert_eq!(order_body["amount"], 500);
    assert_eq!(after["lines"].as_array().unwrap().len(), 1);
    assert_eq!(after["lines"][0]["item_id"], a);
    assert_error(not_in_cart, &not_in_cart_body, 422, "validation_failed");
    assert_eq!(all, StatusCode::CREATED);
    assert_error(empty, &empty_body, 422, "validation_failed");
    assert_eq!(app.item(a).await.1["stock_available"], 7);
}

async fn the_wishlist_is_idempotent_and_orders_only_listed_items(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await;
    let a = app.general_item(&seller, "A", 100, 10).await;
    let b = app.general_item(&seller, "B", 200, 10).await;
    let wish = |method: Method, id: i64| {
        let app = &app;
        let buyer = buyer.clone();
        async move {
            app.send(
                method,
                &format!("/api/v1/wishlist/items/{id}"),
                Some(&buyer),
                None,
                None,
            )
            .await
        }
    };

    // Act
    let first = wish(Method::PUT, a).await.0;
    let second = wish(Method::PUT, a).await.0;
    let (unknown, unknown_body) = wish(Method::PUT, 987_654).await;
    wish(Method::PUT, b).await;
    let removed = wish(Method::DELETE, b).await.0;
    let (_, listed) = app.get("/api/v1/wishlist", Some(&buyer)).await;
    let (not_listed, not_listed_body) = app
        .post(
            "/api/v1/orders/from-wishlist",
            Some(&buyer),
            json!({"lines": [{"item_id": b, "quantity": 1}]}),
        )
        .await;
    let (ordered, order_body) = app
        .post(
            "/api/v1/orders/from-wishlist",
            Some(&buyer),
            json!({"lines": [{"item_id": a, "quantity": 2}]}),
        )
        .await;

    // Assert
    assert_eq!(
        (first, second, removed),
        (
            StatusCode::NO_CONTENT,
            StatusCode::NO_CONTENT,
            StatusCode::NO_CONTENT
        )
    );
    assert_error(unknown, &unknown_body, 404, "not_found");
    let ids: Vec<i64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [a]);
    assert_error(not_listed, &not_listed_body, 422, "validation_failed");
    assert_eq!(ordered, StatusCode::CREATED, "{order_body}");
    assert_eq!(order_body["amount"], 200);
}

async fn deleting_the_account_empties_cart_and_wishlist(store: Store) {
    // Arrange
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let (user_id, buyer) = app.new_user("buyer@hurry.test").await;
    let a = app.general_item(&seller, "A", 100, 10).await;
    app.send(
        Method::PUT,
        &format!("/api/v1/cart/items/{a}"),
        Some(&buyer),
        Some(json!({"quantity": 2})),
        None,
    )
    .await;
    app.send(
        Method::PUT,
        &format!("/api/v1/wishlist/items/{a}"),
        Some(&buyer),
        None,
        None,
    )
    .await;

    // Act
    let (status, body) = app
        .send(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&buyer),
            Some(json!({"password": PASSWORD})),
            None,
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let raw = app.db.raw().await;
    for table in ["cart_items", "wishlist_items"] {
        let rows = raw
            .scalar(&format!(
                "SELECT COUNT(*) FROM {table} WHERE user_id = {user_id}"
            ))
            .await;
        assert_eq!(rows, 0, "{table}");
    }
    let (login, _) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "buyer@hurry.test", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login, StatusCode::UNAUTHORIZED);
}
