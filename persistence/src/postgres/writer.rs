//! The connections batch writes go through on PostgreSQL, and how a write that broke off in
//! doubt is settled.
//!
//! A batch is one statement. When its connection fails mid-statement (a cut network, a client
//! timeout) the backend may still be running it, blocked on a lock, and commit later: reading
//! the orders at once could say "absent" for orders that land a moment after. So each batch
//! connection knows its backend (pid and start time, read once at connect), a write without an
//! answer records that backend as unfenced, and [`Writers::fence`] terminates it (waiting for
//! it to exit) before anyone reads what landed. The connections carry the application name
//! [`WRITER_APP`] and a statement timeout of the store's commit timeout, so a batch the
//! database answers is answered within it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection as _;
use tokio::sync::Semaphore;

use crate::error::StoreError;

/// Application name of every batch-writing connection (what a new drop holder fences).
pub(super) const WRITER_APP: &str = "hurry-writer";

/// A backend, told apart from a later one that reuses its pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BackendId {
    pid: i32,
    started: DateTime<Utc>,
}

struct WriterConn {
    conn: PgConnection,
    backend: BackendId,
    last_used: Instant,
}

/// Batch connections, at most `max` at a time, kept open between batches.
pub(super) struct Writers {
    options: PgConnectOptions,
    idle: Mutex<Vec<WriterConn>>,
    permits: Semaphore,
    /// Backends whose write ended without an answer and that are not terminated yet.
    unfenced: Mutex<Vec<BackendId>>,
    /// How long a write may go without an answer before it is in doubt.
    deadline: Duration,
    ping_idle_after: Duration,
}

impl Writers {
    /// Batch connections from `options`, with `statement_timeout` = `commit_timeout`.
    pub(super) fn new(
        options: &PgConnectOptions,
        max: u32,
        commit_timeout: Duration,
        deadline: Duration,
        ping_idle_after: Duration,
    ) -> Self {
        let timeout_ms = commit_timeout.as_millis().max(1).to_string();
        let options = options
            .clone()
            .application_name(WRITER_APP)
            .options([("statement_timeout", timeout_ms.as_str())]);
        Self {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max.max(1) as usize),
            unfenced: Mutex::new(Vec::new()),
            deadline,
            ping_idle_after,
        }
    }

    /// A batch connection for one write (run it on [`Lease::conn`], within
    /// [`Writers::deadline`], and hand the outcome to [`Lease::finish`]).
    pub(super) async fn checkout(&self) -> Result<Lease<'_>, StoreError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Config("the batch connections are closed".into()))?;
        let writer = self.connection().await?;
        Ok(Lease {
            writers: self,
            writer: Some(writer),
            _permit: permit,
        })
    }

    /// How long a write may go without an answer before it is in doubt.
    pub(super) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Terminates every backend whose write ended in doubt and waits until each has exited:
    /// afterwards none of those writes can still land. Errors leave them for the next call.
    pub(super) async fn fence(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let pending: Vec<BackendId> = self.unfenced_list().clone();
        for backend in &pending {
            terminate(conn, backend).await?;
        }
        self.unfenced_list()
            .retain(|backend| !pending.contains(backend));
        Ok(())
    }

    fn unfenced_list(&self) -> std::sync::MutexGuard<'_, Vec<BackendId>> {
        self.unfenced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn idle_list(&self) -> std::sync::MutexGuard<'_, Vec<WriterConn>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection (pinged when it sat idle a while; a dead one is replaced: nothing
    /// was written on it) or a new one.
    async fn connection(&self) -> Result<WriterConn, StoreError> {
        loop {
            let Some(mut writer) = self.idle_list().pop() else {
                return self.connect().await;
            };
            if writer.last_used.elapsed() < self.ping_idle_after || writer.conn.ping().await.is_ok()
            {
                return Ok(writer);
            }
        }
    }

    async fn connect(&self) -> Result<WriterConn, StoreError> {
        let mut conn = PgConnection::connect_with(&self.options).await?;
        let (pid, started): (i32, DateTime<Utc>) = sqlx::query_as(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .fetch_one(&mut conn)
        .await?;
        Ok(WriterConn {
            conn,
            backend: BackendId { pid, started },
            last_used: Instant::now(),
        })
    }

    fn check_in(&self, mut writer: WriterConn) {
        writer.last_used = Instant::now();
        self.idle_list().push(writer);
    }

    /// The write on `writer` is in doubt: its backend waits to be fenced, the connection goes.
    fn lost(&self, writer: WriterConn, err: StoreError) -> StoreError {
        tracing::warn!(pid = writer.backend.pid, error = %err, "a batch write is in doubt");
        self.unfenced_list().push(writer.backend);
        // Dropping closes the socket; the backend may run on until fenced.
        drop(writer);
        err
    }
}

/// One write's batch connection. Dropped without [`Lease::finish`] (the write was cancelled
/// midway) it counts as in doubt.
pub(super) struct Lease<'a> {
    writers: &'a Writers,
    writer: Option<WriterConn>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The connection to write on.
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self
            .writer
            .as_mut()
            .expect("a lease holds its connection until finished")
            .conn
    }

    /// The write's result, classified: no answer within the deadline, or a failure that left
    /// none (I/O, protocol), is `InDoubt`, and the connection's backend is recorded for
    /// [`Writers::fence`] and the connection closed; an answered error keeps the connection.
    pub(super) fn finish<T>(
        mut self,
        outcome: Result<Result<T, sqlx::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        let writer = self
            .writer
            .take()
            .expect("a lease holds its connection until finished");
        let writers = self.writers;
        match outcome {
            Ok(Ok(value)) => {
                writers.check_in(writer);
                Ok(value)
            }
            Ok(Err(err)) => match StoreError::from_write(err) {
                err @ StoreError::InDoubt(_) => Err(writers.lost(writer, err)),
                err => {
                    writers.check_in(writer);
                    Err(err)
                }
            },
            Err(_) => Err(writers.lost(
                writer,
                StoreError::InDoubt(format!("no answer within {:?}", writers.deadline)),
            )),
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.writers.lost(
                writer,
                StoreError::InDoubt("the write was cancelled".into()),
            );
        }
    }
}

/// Terminates `backend` if it still runs, and waits for it to exit.
async fn terminate(conn: &mut PgConnection, backend: &BackendId) -> Result<(), StoreError> {
    let exited: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
         WHERE pid = $1 AND backend_start = $2",
    )
    .bind(backend.pid)
    .bind(backend.started)
    .fetch_all(conn)
    .await?;
    if exited.iter().all(|gone| *gone) {
        Ok(())
    } else {
        Err(StoreError::InDoubt(format!(
            "backend {} has not exited yet",
            backend.pid
        )))
    }
}

/// Terminates every batch-writing backend on this database but `conn`'s own (an earlier
/// drop holder's, whose process is gone) and waits until they have exited.
pub(super) async fn fence_earlier_writers(conn: &mut PgConnection) -> Result<(), StoreError> {
    let exited: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1 \
         AND pid <> pg_backend_pid()",
    )
    .bind(WRITER_APP)
    .fetch_all(conn)
    .await?;
    let num_left = exited.iter().filter(|gone| !**gone).count();
    if num_left > 0 {
        return Err(StoreError::InDoubt(format!(
            "{num_left} batch writers of an earlier process have not exited yet"
        )));
    }
    if !exited.is_empty() {
        tracing::warn!(
            num = exited.len(),
            "terminated batch writes an earlier process left running"
        );
    }
    Ok(())
}
