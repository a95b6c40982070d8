//! Shared test harness: `TestApp::spawn(Store::X)` starts the real server on port 0 over a fresh
//! SQLite file or a fresh PostgreSQL database, and returns a typed HTTP client.

pub mod cluster;
pub mod db;
pub mod pay;
pub mod smtp;
pub use cluster::*;
pub use db::*;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hurry_api::settings::{Settings, TEST};
use hurry_api::startup::Application;
use hurry_api::state::AppState;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A running in-process server and a client for it (the client's helpers via `Deref`).
pub struct TestApp {
    pub api: Api,
    pub state: AppState,
    pub db: TestDb,
    /// The Redis keys of a cluster-mode server (deleted on drop).
    pub redis: Option<RedisPrefix>,
    server: tokio::task::JoinHandle<()>,
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A typed HTTP client for one server.
pub struct Api {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
}

/// Settings for a test server on `db`: port 0, cheap hashing, bootstrap admin, and `layers`.
pub fn test_settings(db: &TestDb, layers: &[&str]) -> Settings {
    let mut all = vec![TEST];
    all.extend_from_slice(layers);
    let mut settings = Settings::load(None, &all).expect("test settings");
    settings.http.listen = "127.0.0.1:0".parse().unwrap();
    settings.database.url = db.url.clone();
    settings.admin.email = ADMIN_EMAIL.to_owned();
    settings.admin.password = ADMIN_PASSWORD.into();
    settings
}

impl TestApp {
    pub async fn spawn(store: Store) -> Self {
        Self::spawn_with(store, &[]).await
    }

    /// A server with extra TOML `layers` over the test configuration.
    pub async fn spawn_with(store: Store, layers: &[&str]) -> Self {
        Self::spawn_on(store, Bus::Local, None, layers).await
    }

    /// A server on `bus`; with Redis, through `redis_addr` when given (a proxy), else
    /// `REDIS_URL`, under a key prefix of its own.
    pub async fn spawn_on(
        store: Store,
        bus: Bus,
        redis_addr: Option<SocketAddr>,
        layers: &[&str],
    ) -> Self {
        let db = TestDb::create(store).await;
        let mut settings = test_settings(&db, layers);
        let redis = (bus == Bus::Redis).then(RedisPrefix::new);
        if let Some(prefix) = &redis {
            settings.redis.url = match redis_addr {
                Some(addr) => format!("redis://{addr}"),
                None => redis_url(),
            };
            settings.redis.key_prefix = prefix.prefix.clone();
        }
        Self::serve(settings, db, redis).await
    }

    /// Builds and starts a server with `settings` on `db`.
    pub async fn serve(settings: Settings, db: TestDb, redis: Option<RedisPrefix>) -> TestApp {
        let app = Application::build(settings).await.expect("app builds");
        let addr = app.local_addr();
        let state = app.state().clone();
        let server = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        TestApp {
            api: Api::new(addr),
            state,
            db,
            redis,
            server,
        }
    }
}

impl TestApp {
    /// Stops this server (its engine, its background work and its listener) and starts a new
    /// one with the same settings on the same database and Redis prefix, as a restart of the
    /// process would. This one keeps owning the database and removes it when dropped.
    pub async fn restart(&self) -> TestApp {
        self.stop().await;
        let mut settings = (*self.state.settings).clone();
        settings.http.listen = "127.0.0.1:0".parse().unwrap();
        Self::serve(settings, self.db.shared(), None).await
    }

    /// Stops this server (its engine, its background work and its listener) as a stopped
    /// process would; it keeps owning the database.
    pub async fn stop(&self) {
        self.server.abort();
        self.state.stop_background();
        self.state.engine.stop().await;
    }

    /// A second server on this one's database and Redis prefix (cluster mode: another node).
    /// The first server owns both and removes them.
    pub async fn another_node(&self, layers: &[&str]) -> TestApp {
        let db = self.db.shared();
        let mut settings = test_settings(&db, layers);
        if let Some(prefix) = &self.redis {
            settings.redis.url = self.state.settings.redis.url.clone();
            settings.redis.key_prefix = prefix.prefix.clone();
        }
        Self::serve(settings, db, None).await
    }
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Api {
            addr,
            client: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request; returns the status and the JSON body (`Null` when empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("request sent");
        read(response).await
    }

    /// A purchase that tolerates a dead server: `None` when no answer came.
    pub async fn try_purchase(
        &self,
        token: &str,
        item_id: i64,
        key: &str,
    ) -> Option<(StatusCode, Value)> {
        let response = self
            .client
            .post(self.url(&format!("/api/v1/items/{item_id}/purchase")))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"quantity": 1}))
            .send()
            .await
            .ok()?;
        let status = response.status();
        let body = response.json().await.ok()?;
        Some((status, body))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None, None)
            .await
    }

    /// A text answer (`/metrics`).
    pub async fn get_text(&self, path: &str) -> String {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("answer");
        response.text().await.expect("text")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body), None)
            .await
    }

    /// Signs up and logs in; returns `(user id, access token)`.
    pub async fn new_user(&self, email: &str) -> (i64, String) {
        let (status, body) = self
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": email, "password": PASSWORD, "name": "Test User"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "signup {email}: {body}");
        let user_id = body["user_id"].as_i64().expect("user_id");
        (user_id, self.login(email, PASSWORD).await)
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {email}: {body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// A new user with the seller role; returns a token that carries it.
    pub async fn seller(&self, email: &str) -> (i64, String) {
        let (user_id, _) = self.new_user(email).await;
        let admin = self.admin_token().await;
        let (status, body) = self
            .post(
                &format!("/api/v1/admin/users/{user_id}/roles"),
                Some(&admin),
                json!({"roles": ["seller"]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "grant seller: {body}");
        (user_id, self.login(email, PASSWORD).await)
    }

    /// Creates a drop of `units` at `price`, open from `opens_at` to `closes_at`.
    pub async fn create_drop_at(
        &self,
        seller_token: &str,
        units: i64,
        per_user_limit: i64,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    ) -> i64 {
        let (status, body) = self
            .post(
                "/api/v1/items",
                Some(seller_token),
                json!({
                    "name": "Limited sneaker",
                    "description": "numbered pair",
                    "price": 1_000,
                    "stock": units,
                    "drop": {
                        "opens_at": opens_at,
                        "closes_at": closes_at,
                        "per_user_limit": per_user_limit,
                    }
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create drop: {body}");
        body["id"].as_i64().expect("item id")
    }

    /// A drop that is open now and for the next hour.
    pub async fn open_drop(&self, seller_token: &str, units: i64, per_user_limit: i64) -> i64 {
        let now = Utc::now();
        self.create_drop_at(
            seller_token,
            units,
            per_user_limit,
            now - chrono::Duration::seconds(1),
            now + chrono::Duration::hours(1),
        )
        .await
    }

    /// Buys `quantity` of `item_id`; returns status and body.
    pub async fn purchase(
        &self,
        token: &str,
        item_id: i64,
        quantity: i64,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            &format!("/api/v1/items/{item_id}/purchase"),
            Some(token),
            Some(json!({"quantity": quantity})),
            key,
        )
        .await
    }

    /// Live stock of an item as the API reports it.
    pub async fn stock_of(&self, item_id: i64) -> i64 {
        let (status, body) = self.get(&format!("/api/v1/items/{item_id}"), None).await;
        assert_eq!(status, StatusCode::OK, "item: {body}");
        body["stock_available"].as_i64().expect("stock_available")
    }

    /// Creates a general item of `seller`; returns its id.
    pub async fn general_item(&self, seller: &str, name: &str, price: i64, stock: i64) -> i64 {
        let (status, body) = self
            .post(
                "/api/v1/items",
                Some(seller),
                json!({"name": name, "description": "plain", "price": price, "stock": stock}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().expect("item id")
    }

    /// Places a general order of `lines` (`[{item_id, quantity}]`).
    pub async fn order(&self, token: &str, lines: Value, key: Option<&str>) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            "/api/v1/orders",
            Some(token),
            Some(json!({ "lines": lines })),
            key,
        )
        .await
    }

    /// `GET /items/{id}`.
    pub async fn item(&self, id: i64) -> (StatusCode, Value) {
        self.get(&format!("/api/v1/items/{id}"), None).await
    }

    /// Creates `count` users concurrently; returns their `(id, token)`.
    pub async fn many_users(&self, prefix: &str, count: usize) -> Vec<(i64, String)> {
        use futures::StreamExt;
        futures::stream::iter(0..count)
            .map(|index| async move { self.new_user(&format!("{prefix}{index}@hurry.test")).await })
            .buffer_unordered(64)
            .collect()
            .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        self.state.stop_background();
        self.state.engine.shutdown();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1024)
        .build()
        .expect("client")
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, body)
}

/// Asserts the API error schema and code.
pub fn assert_error(status: StatusCode, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status.as_u16(), expected_status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].is_string(), "body: {body}");
    assert!(body["error"]["details"].is_array(), "body: {body}");
}
