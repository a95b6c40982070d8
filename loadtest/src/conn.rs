//! The load's HTTP/1.1 client: a pool of at most N keep-alive connections on hyper's connection
//! API, with none of a general client's per-request work (no URL parsing, no redirects, no
//! cookie or proxy handling), so that the harness costs the shared CPU as little as possible.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Sender = SendRequest<Full<Bytes>>;

/// Keep-alive connections to one `host:port`; a connection is opened when none is idle.
#[derive(Clone)]
pub struct Pool {
    authority: Arc<str>,
    host: HeaderValue,
    idle: Arc<Mutex<Vec<Sender>>>,
}

impl Pool {
    /// A pool for `base` (`http://host:port`, anything after the authority is ignored).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = base.parse().with_context(|| format!("bad URL {base}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "only http:// targets are supported: {base}"
        );
        let authority = uri.authority().context("URL without host")?.as_str();
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            host: HeaderValue::from_str(&authority)?,
            authority: authority.into(),
            idle: Arc::default(),
        })
    }

    /// Sends `request` (its Host header is set here) and reads the whole answer.
    pub async fn send(
        &self,
        mut request: Request<Full<Bytes>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        request.headers_mut().insert(HOST, self.host.clone());
        let idle = self.idle.lock().expect("pool lock").pop();
        let mut sender = match idle {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !sender.is_closed() {
            self.idle.lock().expect("pool lock").push(sender);
        }
        Ok((status, body))
    }

    async fn connect(&self) -> anyhow::Result<Sender> {
        let stream = TcpStream::connect(&*self.authority)
            .await
            .with_context(|| format!("cannot connect to {}", self.authority))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// A request for `path` on the pool's host.
pub fn request(method: http::Method, path: &str) -> http::request::Builder {
    Request::builder().method(method).uri(path)
}
