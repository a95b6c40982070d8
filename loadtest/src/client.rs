//! The HTTP calls the harness makes besides the load itself: admin login, the drop, shoppers,
//! the audit view.

use std::time::Duration;

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::ServerDrop;

/// Shoppers asked for per provisioning call (the server's most).
const PROVISION_CHUNK: usize = 10_000;

/// A server's API, reached through one of its base URLs.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

/// A provisioned shopper.
#[derive(Debug, Clone, Deserialize)]
pub struct Shopper {
    pub user_id: i64,
    pub access_token: String,
}

/// The drop the harness created.
#[derive(Debug, Clone, Copy)]
pub struct DropItem {
    pub id: i64,
    pub units: i64,
    pub per_user_limit: i64,
}

/// A keep-alive client for `connections` requests in flight.
pub fn http_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

impl Api {
    pub fn new(client: reqwest::Client, base: &str) -> Self {
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = self.client.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Waits until `/healthz` answers 200, for at most `patience`.
    pub async fn wait_healthy(&self, patience: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let url = format!("{}/healthz", self.base);
            if let Ok(response) = self.client.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{url} did not answer 200 within {patience:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Logs the admin in; the error says how to start a server for load tests.
    pub async fn admin_token(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let body = json!({"email": email, "password": password});
        let (status, body) = self
            .call(reqwest::Method::POST, "/auth/login", None, Some(body))
            .await?;
        if status != 200 {
            bail!(
                "admin login as {email} at {} answered {status}: {body}\n{}",
                self.base,
                SERVER_HINT
            );
        }
        Ok(body["access_token"]
            .as_str()
            .context("login answer without access_token")?
            .to_owned())
    }

    /// Creates a drop of `units` units, open from a minute ago for `open_for`.
    pub async fn create_drop(
        &self,
        admin: &str,
        name: &str,
        units: i64,
        per_user_limit: i64,
        open_for: Duration,
    ) -> anyhow::Result<DropItem> {
        let now = chrono::Utc::now();
        let opens_at = now - chrono::Duration::minutes(1);
        let closes_at = now + chrono::Duration::from_std(open_for)?;
        let body = json!({
            "name": name, "description": "hurry-loadtest drop", "price": 1000, "stock": units,
            "drop": {"opens_at": opens_at.to_rfc3339(), "closes_at": closes_at.to_rfc3339(),
                     "per_user_limit": per_user_limit}
        });
        let (status, item) = self
            .call(reqwest::Method::POST, "/items", Some(admin), Some(body))
            .await?;
        if status != 201 {
            bail!("creating the drop answered {status}: {item}");
        }
        Ok(DropItem {
            id: item["id"].as_i64().context("item without id")?,
            units,
            per_user_limit,
        })
    }

    /// `count` shoppers with access tokens, a few provisioning calls at a time.
    pub async fn provision(&self, admin: &str, count: usize) -> anyhow::Result<Vec<Shopper>> {
        let chunks: Vec<usize> = (0..count)
            .step_by(PROVISION_CHUNK)
            .map(|start| PROVISION_CHUNK.min(count - start))
            .collect();
        let batches: Vec<Vec<Shopper>> = futures::stream::iter(chunks)
            .map(|size| self.provision_chunk(admin, size))
            .buffered(2)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().collect())
    }

    async fn provision_chunk(&self, admin: &str, count: usize) -> anyhow::Result<Vec<Shopper>> {
        #[derive(Deserialize)]
        struct Provisioned {
            shoppers: Vec<Shopper>,
        }
        let body = json!({ "count": count });
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                "/admin/loadtest/shoppers",
                Some(admin),
                Some(body),
            )
            .await?;
        if status == 404 {
            bail!(
                "provisioning is off at {}: {}",
                self.base,
                "start the server with HURRY__LOADTEST__PROVISIONING_ENABLED=true"
            );
        }
        if status != 201 {
            bail!("provisioning answered {status}: {answer}");
        }
        let provisioned: Provisioned = serde_json::from_value(answer)?;
        Ok(provisioned.shoppers)
    }

    /// The server's view of drop `item_id`, for the audit.
    pub async fn drop_view(&self, admin: &str, item_id: i64) -> anyhow::Result<ServerDrop> {
        let path = format!("/admin/loadtest/drops/{item_id}");
        let (status, body) = self
            .call(reqwest::Method::GET, &path, Some(admin), None)
            .await?;
        if status != 200 {
            bail!("the audit view {path} answered {status}: {body}");
        }
        Ok(serde_json::from_value(body)?)
    }
}

/// How to start a server the harness can drive.
pub const SERVER_HINT: &str = "start the server for load tests with, for example:\n  \
    HURRY__ADMIN__EMAIL=admin@loadtest.invalid HURRY__ADMIN__PASSWORD=loadtest-admin-password \
    HURRY__LOADTEST__PROVISIONING_ENABLED=true HURRY__RATE_LIMIT__ENABLED=false \
    cargo run --release";
