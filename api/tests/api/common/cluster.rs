//! Cluster-mode test helpers: a Redis key prefix per test (keys deleted afterwards), a TCP
//! proxy that can cut a service off, and waiting for a condition.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which event bus a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// In process (embedded mode).
    Local,
    /// Redis Streams on the Redis at `REDIS_URL`.
    Redis,
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix only this test uses; its keys are deleted on drop.
pub struct RedisPrefix {
    pub prefix: String,
    url: String,
}

impl RedisPrefix {
    pub fn new() -> Self {
        Self {
            prefix: format!("test-{}:", uuid::Uuid::new_v4().simple()),
            url: redis_url(),
        }
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let (url, pattern) = (self.url.clone(), format!("{}*", self.prefix));
        super::clean_up_blocking(async move {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
            }
        });
    }
}

/// Polls `check` until it returns `Some`, for at most `limit`; panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A TCP proxy in front of a service. `cut()` closes every connection and refuses new ones
/// until `restore()`: the service is down for whoever connects through the proxy.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (up, connections) = (up.clone(), connections.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(relay);
                }
            })
        };
        Self {
            addr,
            up,
            connections,
            acceptor,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

/// The `host:port` of a `redis://host:port[/db]` url.
pub fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let rest = url.trim_start_matches("redis://");
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&host_port)
        .expect("resolve redis")
        .next()
        .expect("redis address")
}

/// A one-line order of one unit of `item_id` at 1,000 won (user 1), to write straight into a
/// store (no item actor, no relay wake-up).
pub fn one_unit_order(id: i64, item_id: i64) -> hurry_persistence::NewOrder {
    hurry_persistence::NewOrder {
        id,
        user_id: 1,
        status: "pending_payment".to_owned(),
        amount: 1_000,
        payment_due_at: None,
        created_at: chrono::Utc::now(),
        lines: vec![hurry_persistence::OrderLine {
            item_id,
            quantity: 1,
            unit_price: 1_000,
            amount: 1_000,
        }],
        idempotency: None,
    }
}

/// A TCP proxy whose `cut_clients()` closes the client side of every open connection and keeps
/// the service side open: the client sees its connection die, the service sees a client that
/// is merely quiet (a PostgreSQL backend goes on with its statement, as it does when a network
/// between the two fails). New connections pass.
pub struct HalfCutProxy {
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    /// Service sides kept open after a cut, until the proxy is dropped.
    kept: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: JoinHandle<()>,
}

impl HalfCutProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (cut, _) = tokio::sync::watch::channel(0_u64);
        let kept: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let acceptor = {
            let (cut, kept) = (cut.clone(), kept.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        continue;
                    };
                    let (cuts, kept) = (cut.subscribe(), kept.clone());
                    tokio::spawn(relay_until_cut(inbound, outbound, cuts, kept));
                }
            })
        };
        Self {
            addr,
            cut,
            kept,
            acceptor,
        }
    }

    /// Closes the client side of every connection open now.
    pub fn cut_clients(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }
}

impl Drop for HalfCutProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.kept.lock().unwrap().clear();
    }
}

/// Copies both ways until either side closes, or until a cut: then the client side closes and
/// the service side is kept open.
async fn relay_until_cut(
    mut inbound: TcpStream,
    mut outbound: TcpStream,
    mut cuts: tokio::sync::watch::Receiver<u64>,
    kept: Arc<Mutex<Vec<TcpStream>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    cuts.mark_unchanged();
    let (mut from_client, mut from_service) = (vec![0_u8; 16 * 1024], vec![0_u8; 16 * 1024]);
    loop {
        tokio::select! {
            read = inbound.read(&mut from_client) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if outbound.write_all(&from_client[..n]).await.is_err() { return },
            },
            read = outbound.read(&mut from_service) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if inbound.write_all(&from_service[..n]).await.is_err() { return },
            },
            _ = cuts.changed() => {
                drop(inbound);
                kept.lock().unwrap().push(outbound);
                return;
            }
        }
    }
}

/// The `host:port` of the PostgreSQL of `DATABASE_URL` (default 127.0.0.1:5432).
pub fn postgres_addr() -> SocketAddr {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let rest = url.split("://").nth(1).unwrap_or(&url);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&host_port)
        .expect("resolve postgres")
        .next()
        .expect("postgres address")
}

/// `url` (a `postgres://` url) pointed at `addr` instead of its own host and port.
pub fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a url");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"));
    format!("{scheme}://{}{addr}/{path}", user.unwrap_or_default())
}
