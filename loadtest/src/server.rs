//! Starting and stopping a `hurry` server for a comparison run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::Connection;

use crate::client::Api;

/// How to start one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub bin: PathBuf,
    pub strategy: String,
    pub database_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub admin_email: String,
    pub admin_password: String,
    /// The server's output goes here.
    pub log: PathBuf,
}

/// A running server, killed when dropped.
pub struct Server {
    child: tokio::process::Child,
    pub base: String,
}

/// The `hurry` binary beside this one (`cargo build --release` puts both in target/release).
pub fn default_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.with_file_name(format!("hurry{}", std::env::consts::EXE_SUFFIX))
}

impl Server {
    pub async fn start(spec: &ServerSpec) -> anyhow::Result<Self> {
        if !spec.bin.is_file() {
            bail!(
                "no server binary at {}: build it with `cargo build --release` or pass --server-bin",
                spec.bin.display()
            );
        }
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        if let Some(dir) = spec.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::File::create(&spec.log)
            .with_context(|| format!("cannot write {}", spec.log.display()))?;
        let child = tokio::process::Command::new(&spec.bin)
            .env("HURRY__HTTP__LISTEN", &listen)
            .env("HURRY__DATABASE__URL", &spec.database_url)
            .env("HURRY__REDIS__URL", &spec.redis_url)
            .env("HURRY__REDIS__KEY_PREFIX", &spec.redis_prefix)
            .env("HURRY__ENGINE__STOCK_STRATEGY", &spec.strategy)
            // Each strategy gets one node of its own, the only one storing keys: the
            // idempotency memory index is exact there (cluster mode turns it off by default).
            .env("HURRY__IDEMPOTENCY__MEMORY_INDEX", "true")
            .env("HURRY__ADMIN__EMAIL", &spec.admin_email)
            .env("HURRY__ADMIN__PASSWORD", &spec.admin_password)
            .env("HURRY__LOADTEST__PROVISIONING_ENABLED", "true")
            .env("HURRY__AUTH__REQUIRE_EMAIL_VERIFICATION", "false")
            .env("HURRY__RATE_LIMIT__ENABLED", "false")
            .env("HURRY__LOG__FILTER", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", spec.bin.display()))?;
        let server = Self {
            child,
            base: format!("http://{listen}"),
        };
        let api = Api::new(reqwest::Client::new(), &server.base);
        if let Err(err) = api.wait_healthy(Duration::from_secs(60)).await {
            bail!("{err}; see {}", spec.log.display());
        }
        Ok(server)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `url` with `_suffix` added to its database name (a database of its own per run).
pub fn database_for(url: &str, suffix: &str) -> String {
    match url.rsplit_once('/') {
        Some((server, rest)) => match rest.split_once('?') {
            Some((name, query)) => format!("{server}/{name}_{suffix}?{query}"),
            None => format!("{server}/{rest}_{suffix}"),
        },
        None => url.to_owned(),
    }
}

/// The server part and the database name of a PostgreSQL URL.
fn split_database(url: &str) -> anyhow::Result<(&str, &str)> {
    let (server, name) = url
        .rsplit_once('/')
        .context("a PostgreSQL URL ends with /DATABASE")?;
    let name = name.split('?').next().unwrap_or(name);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("database name {name:?}: use letters, digits and _");
    }
    Ok((server, name))
}

/// A connection to the `postgres` database of `url`'s server, and `url`'s database name.
async fn maintenance_connection(url: &str) -> anyhow::Result<(sqlx::PgConnection, &str)> {
    let (server, name) = split_database(url)?;
    let admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {server}"))?;
    Ok((admin, name))
}

/// Creates the PostgreSQL database of `url` unless it exists (other URLs: nothing to do).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    if !url.starts_with("postgres") {
        return Ok(());
    }
    let (mut admin, name) = maintenance_connection(url).await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}

/// Drops the PostgreSQL database of `url` (other URLs: nothing to do).
pub async fn drop_database(url: &str) -> anyhow::Result<()> {
    if !url.starts_with("postgres") {
        return Ok(());
    }
    let (mut admin, name) = maintenance_connection(url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// Deletes every key under `prefix` on the Redis at `url` (a finished run's streams and
/// counters), a few hundred at a time.
pub async fn drop_redis_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    if url.is_empty() || prefix.is_empty() {
        return Ok(());
    }
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// `dir/name.log`.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

#[cfg(test)]
mod tests {
    use super::database_for;

    #[test]
    fn each_run_gets_a_database_named_after_it() {
        assert_eq!(
            database_for("postgres://u@h:5432/shop", "1_actor"),
            "postgres://u@h:5432/shop_1_actor"
        );
        assert_eq!(
            database_for("postgres://u@h/shop?sslmode=disable", "2_pg_row"),
            "postgres://u@h/shop_2_pg_row?sslmode=disable"
        );
    }
}
