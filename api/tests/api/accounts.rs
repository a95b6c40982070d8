//! Sessions and the caller's account over real HTTP, against SQLite and PostgreSQL: refresh
//! rotation with reuse detection, logout, profile, password change.

use crate::common::{self, assert_error, both_stores, Store, TestApp, PASSWORD};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn login_pair(app: &TestApp, email: &str, password: &str) -> Value {
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["refresh_token"].is_string() && body["access_token"].is_string());
    body
}

async fn refresh(app: &TestApp, refresh_token: &Value) -> (StatusCode, Value) {
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": refresh_token}),
    )
    .await
}

async fn refresh_rotates_and_a_reused_token_revokes_its_family(store: Store) {
    let app = TestApp::spawn(store).await;
    app.new_user("user@hurry.test").await;
    let first = login_pair(&app, "user@hurry.test", PASSWORD).await;

    let (status, second) = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (status, me) = app
        .get("/api/v1/users/me", second["access_token"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "user@hurry.test");

    // The first token again: reuse. Its family, including the second token, is revoked.
    let (status, body) = refresh(&app, &first["refresh_token"]).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = refresh(&app, &second["refresh_token"]).await;
    assert_error(status, &body, 401, "unauthorized");

    // Another login is another family, untouched.
    let other = login_pair(&app, "user@hurry.test", PASSWORD).await;
    let (status, _) = refresh(&app, &other["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = refresh(&app, &json!("not-a-token")).await;
    assert_error(status, &body, 401, "unauthorized");
}

async fn logout_revokes_the_access_token_and_the_session(store: Store) {
    let app = TestApp::spawn(store).await;
    app.new_user("user@hurry.test").await;
    let session = login_pair(&app, "user@hurry.test", PASSWORD).await;
    let other = login_pair(&app, "user@hurry.test", PASSWORD).await;
    let access = session["access_token"].as_str().unwrap();

    let (status, body) = app
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            Some(access),
            Some(json!({"refresh_token": session["refresh_token"]})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = app.get("/api/v1/users/me", Some(access)).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = refresh(&app, &session["refresh_token"]).await;
    assert_error(status, &body, 401, "unauthorized");

    // The other session goes on.
    let (status, _) = app
        .get("/api/v1/users/me", other["access_token"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = refresh(&app, &other["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK);
}

async fn profile_reads_and_changes_only_the_callers_account(store: Store) {
    let app = TestApp::spawn(store).await;
    let (alice_id, alice) = app.new_user("alice@hurry.test").await;
    let (_, bob) = app.new_user("bob@hurry.test").await;

    let (status, me) = app.get("/api/v1/users/me", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user_id"], alice_id);
    assert_eq!(me["roles"], json!(["customer"]));
    assert_eq!(me["email_verified"], true);

    let (status, patched) = app
        .send(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&alice),
            Some(json!({"name": "Alice Kim", "phone": "010-1234-5678"})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Alice Kim");
    assert_eq!(patched["phone"], "010-1234-5678");
    assert_eq!(patched["address"], Value::Null);
    let (_, again) = app.get("/api/v1/users/me", Some(&alice)).await;
    assert_eq!(again, patched);
    let (_, bobs) = app.get("/api/v1/users/me", Some(&bob)).await;
    assert_eq!(bobs["name"], "Test User", "bob is untouched");

    for bad in [
        json!({"name": "   "}),
        json!({"phone": "1".repeat(33)}),
        json!({"name": 5}),
    ] {
        let (status, body) = app
            .send(
                Method::PATCH,
                "/api/v1/users/me",
                Some(&alice),
                Some(bad),
                None,
            )
            .await;
        assert_error(status, &body, 422, "validation_failed");
    }
    let (_, unchanged) = app.get("/api/v1/users/me", Some(&alice)).await;
    assert_eq!(unchanged, patched, "refused changes changed nothing");
}

async fn password_change_checks_the_current_one_and_ends_other_sessions(store: Store) {
    let app = TestApp::spawn(store).await;
    app.new_user("user@hurry.test").await;
    let this = login_pair(&app, "user@hurry.test", PASSWORD).await;
    let other = login_pair(&app, "user@hurry.test", PASSWORD).await;
    let access = this["access_token"].as_str();
    let change = |current: &str, new: &str| {
        app.send(
            Method::PUT,
            "/api/v1/users/me/password",
            access,
            Some(json!({"current_password": current, "new_password": new})),
            None,
        )
    };

    let (status, body) = change("wrong-password", "new-password-1").await;
    assert_error(status, &body, 401, "invalid_credentials");
    let (status, body) = change(PASSWORD, "short").await;
    assert_error(status, &body, 422, "validation_failed");
    assert_eq!(body["error"]["details"][0]["field"], "new_password");
    let (status, body) = change(PASSWORD, "new-password-1").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, body) = refresh(&app, &other["refresh_token"]).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, _) = refresh(&app, &this["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "this session goes on");
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "user@hurry.test", "password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, 401, "invalid_credentials");
    login_pair(&app, "user@hurry.test", "new-password-1").await;
}

async fn a_password_change_refuses_every_earlier_access_token_at_once(store: Store) {
    // Arrange: two sessions, the first changes the password.
    let app = TestApp::spawn(store).await;
    app.new_user("user@hurry.test").await;
    let this = login_pair(&app, "user@hurry.test", PASSWORD).await;
    let other = login_pair(&app, "user@hurry.test", PASSWORD).await;

    // Act
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/v1/users/me/password",
            this["access_token"].as_str(),
            Some(json!({"current_password": PASSWORD, "new_password": "new-password-1"})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Assert: both earlier access tokens are refused; tokens issued after the change (a new
    // login, very likely within the same second, and this session's refresh) work.
    for (session, earlier) in [("this", &this), ("other", &other)] {
        let (status, body) = app
            .get("/api/v1/orders", earlier["access_token"].as_str())
            .await;
        assert_error(status, &body, 401, "unauthorized");
        assert_eq!(body["error"]["message"], "token was revoked", "{session}");
    }
    let fresh = login_pair(&app, "user@hurry.test", "new-password-1").await;
    let (status, body) = app
        .get("/api/v1/orders", fresh["access_token"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK, "a login after the change: {body}");
    let (status, renewed) = refresh(&app, &this["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let (status, body) = app
        .get("/api/v1/orders", renewed["access_token"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK, "this session's next token: {body}");
}

async fn a_refresh_racing_a_logout_leaves_no_live_session(store: Store) {
    // Arrange: sessions of one user, each refreshed and logged out at the same time.
    const NUM_SESSIONS: usize = 8;
    let app = TestApp::spawn(store).await;
    app.new_user("user@hurry.test").await;
    let mut sessions = Vec::new();
    for _ in 0..NUM_SESSIONS {
        sessions.push(login_pair(&app, "user@hurry.test", PASSWORD).await);
    }

    // Act
    let races = sessions.iter().map(|session| async {
        let logout = app.send(
            Method::POST,
            "/api/v1/auth/logout",
            session["access_token"].as_str(),
            Some(json!({"refresh_token": session["refresh_token"]})),
            None,
        );
        let (renewed, (status, body)) =
            tokio::join!(refresh(&app, &session["refresh_token"]), logout);
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        renewed
    });
    let renewed = futures::future::join_all(races).await;

    // Assert: a refresh that won its race got a token of a revoked family.
    let mut live = Vec::new();
    for (status, pair) in renewed {
        if status == StatusCode::OK {
            let (status, _) = refresh(&app, &pair["refresh_token"]).await;
            if status == StatusCode::OK {
                live.push(pair["refresh_token"].clone());
            }
        }
    }
    assert_eq!(live, Vec::<Value>::new(), "refresh tokens still live");
}

both_stores!(
    refresh_rotates_and_a_reused_token_revokes_its_family,
    logout_revokes_the_access_token_and_the_session,
    profile_reads_and_changes_only_the_callers_account,
    password_change_checks_the_current_one_and_ends_other_sessions,
    a_password_change_refuses_every_earlier_access_token_at_once,
    a_refresh_racing_a_logout_leaves_no_live_session,
);

async fn rate_limits_answer_429_with_retry_after(store: Store) {
    let app = TestApp::spawn_with(
        store,
        &["[rate_limit]\nenabled = true\nlogin_per_ip_per_min = 100\nlogin_per_account_per_min = 3\nsignup_per_ip_per_min = 4\npurchase_per_user_per_sec = 2\n"],
    )
    .await;
    let (_, seller) = app.seller("seller@hurry.test").await; // one signup, two logins
    let item = app.open_drop(&seller, 100, 100).await;
    let (_, buyer) = app.new_user("buyer@hurry.test").await; // second signup

    for attempt in 0..3 {
        let (status, _) = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "buyer@hurry.test", "password": "wrong-password"}),
            )
            .await;
        let expected = if attempt < 2 { 401 } else { 429 };
        assert_eq!(status.as_u16(), expected, "login attempt {attempt}");
    }
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "buyer@hurry.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let (status, body) = common::read(response).await;
    assert_error(status, &body, 429, "rate_limited");

    let mut statuses = Vec::new();
    for index in 0..3 {
        let (status, _) = app
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": format!("extra{index}@hurry.test"), "password": PASSWORD, "name": "x"}),
            )
            .await;
        statuses.push(status.as_u16());
    }
    assert_eq!(
        statuses,
        vec![201, 201, 429],
        "four signups a minute from one address"
    );

    let mut purchases = Vec::new();
    for _ in 0..3 {
        purchases.push(app.purchase(&buyer, item, 1, None).await.0.as_u16());
    }
    assert_eq!(purchases, vec![201, 201, 429]);
    assert_eq!(
        app.db.raw().await.sales_of(item).await.0,
        2,
        "a limited purchase took nothing"
    );
}

both_stores!(rate_limits_answer_429_with_retry_after);

async fn the_database_holds_no_plaintext_personal_data(store: Store) {
    let app = TestApp::spawn(store).await;
    let (status, body) = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "Alice.Kim@Hurry.test", "password": PASSWORD, "name": "Alice Kim",
                   "phone": "010-9876-5432", "address": "1 Sejong-daero, Seoul"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email"], "alice.kim@hurry.test");
    let token = app.login("alice.kim@hurry.test", PASSWORD).await;
    let (_, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me["name"], "Alice Kim");
    assert_eq!(me["phone"], "010-9876-5432");
    assert_eq!(me["address"], "1 Sejong-daero, Seoul");
    app.send(
        Method::PATCH,
        "/api/v1/users/me",
        Some(&token),
        Some(json!({"address": "2 Teheran-ro, Seoul"})),
        None,
    )
    .await;

    let raw = app.db.raw().await;
    let leaks = raw
        .scalar(
            "SELECT COUNT(*) FROM users WHERE lower(email) LIKE '%alice%' OR lower(email_index) LIKE '%alice%' \
             OR lower(name) LIKE '%alice%' OR phone LIKE '%9876%' OR lower(address) LIKE '%seoul%'",
        )
        .await;
    assert_eq!(leaks, 0, "plaintext personal data in the users table");
    let sealed = raw
        .scalar("SELECT COUNT(*) FROM users WHERE email LIKE 'v2.%' AND name LIKE 'v2.%'")
        .await;
    assert_eq!(sealed, 2, "the admin's and alice's rows are sealed");
    // The login found alice through the blind index, case-insensitively.
    app.login("ALICE.KIM@hurry.test", PASSWORD).await;
}

both_stores!(the_database_holds_no_plaintext_personal_data);

async fn deleting_the_account_cancels_open_orders_and_ends_every_session(store: Store) {
    let app = TestApp::spawn(store).await;
    let (_, seller) = app.seller("seller@hurry.test").await;
    let item = app.open_drop(&seller, 5, 2).await;
    app.new_user("leaver@hurry.test").await;
    let session = login_pair(&app, "leaver@hurry.test", PASSWORD).await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let (status, order) = app.purchase(&access, item, 2, None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(app.stock_of(item).await, 3);
    let delete = |password: &str| {
        app.send(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&access),
            Some(json!({"password": password})),
            None,
        )
    };

    let (status, body) = delete("wrong-password").await;
    assert_error(status, &body, 401, "invalid_credentials");
    let (status, _) = app.get("/api/v1/users/me", Some(&access)).await;
    assert_eq!(status, StatusCode::OK, "a refused deletion changes nothing");
    assert_eq!(app.stock_of(item).await, 3);

    let (status, body) = delete(PASSWORD).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = app.get("/api/v1/users/me", Some(&access)).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = refresh(&app, &session["refresh_token"]).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "leaver@hurry.test", "password": PASSWORD}),
        )
        .await;
    assert_error(status, &body, 401, "invalid_credentials");

    assert_eq!(
        app.stock_of(item).await,
        5,
        "the cancelled order's units are back"
    );
    let raw = app.db.raw().await;
    let order_id = order["id"].as_i64().unwrap();
    assert_eq!(
        raw.scalar(&format!(
            "SELECT COUNT(*) FROM orders WHERE id = {order_id} AND status = 'cancelled'"
        ))
        .await,
        1,
        "the order is kept, cancelled, for the seller's books"
    );
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'order.cancelled'")
            .await,
        1
    );
    assert_eq!(
        raw.scalar("SELECT COUNT(*) FROM users WHERE deleted_at IS NOT NULL AND phone IS NULL")
            .await,
        1
    );
    // The address is free again, and the drop sells the returned units.
    let (_, newcomer) = app.new_user("leaver@hurry.test").await;
    let (status, _) = app.purchase(&newcomer, item, 2, None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(app.stock_of(item).await, 3);
}

both_stores!(deleting_the_account_cancels_open_orders_and_ends_every_session);
