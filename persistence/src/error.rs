//! Errors of the storage layer.

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (for example an email already taken).
    #[error("conflict on {constraint}")]
    Conflict {
        /// Name of the constraint or the column that clashed.
        constraint: String,
    },
    /// The configuration cannot work (bad url, unsupported scheme).
    #[error("store configuration: {0}")]
    Config(String),
    /// A value the schema cannot hold (checked before writing, the same on both backends).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// Stored data broke an expectation of the code (a bug or a manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database could not be reached or refused the statement.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// The relay's sink could not publish (nothing was marked published).
    #[error("publishing failed: {0}")]
    Sink(#[source] SinkError),
    /// Migrations failed.
    #[error("migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A write broke off without an answer (the connection failed or timed out mid-statement):
    /// it may have landed or may still land. [`crate::OrderStore::settle_orders`] tells.
    #[error("write outcome unknown: {0}")]
    InDoubt(String),
}

impl StoreError {
    /// A write that failed with `err` in a way that leaves its outcome unknown becomes
    /// [`StoreError::InDoubt`]: no answer came from the database (an I/O, TLS or protocol
    /// failure, a crashed worker). An error the database answered (a refused statement) means
    /// the write did not land, and keeps its kind.
    pub(crate) fn from_write(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::InDoubt(err.to_string()),
            other => other.into(),
        }
    }

    /// Whether the write this error ended may still have landed.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, StoreError::InDoubt(_))
    }

    /// Whether the store could not be reached or could not answer now, so that the same call
    /// may well succeed later: no connection (I/O, TLS, protocol, the pool gave none in time
    /// or is closed, a crashed worker), a write in doubt, and what PostgreSQL or SQLite answer
    /// when they are busy rather than refusing the statement (serialization failures,
    /// deadlocks, lock and statement timeouts, shutdowns, too many connections; `SQLITE_BUSY`,
    /// `SQLITE_LOCKED`). Everything else (a constraint, an invalid value, a corrupt row) fails
    /// again however often it is tried.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::InDoubt(_) => true,
            StoreError::Database(err) => match err {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|code| busy_code(&code)),
                _ => false,
            },
            _ => false,
        }
    }
}

/// PostgreSQL's SQLSTATEs (five characters) and SQLite's result codes (a number, primary code
/// in the low byte) of a database that is busy, shutting down or cut off.
fn busy_code(code: &str) -> bool {
    const POSTGRES: [&str; 8] = [
        "40001", // serialization_failure
        "40P01", // deadlock_detected
        "55P03", // lock_not_available
        "57014", // query_canceled (statement_timeout)
        "57P01", // admin_shutdown
        "57P02", // crash_shutdown
        "57P03", // cannot_connect_now
        "53300", // too_many_connections
    ];
    if code.len() == 5 {
        return POSTGRES.contains(&code) || code.starts_with("08");
    }
    code.parse::<i32>()
        .is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6))
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict {
                    constraint: db.constraint().unwrap_or("unique").to_owned(),
                };
            }
        }
        StoreError::Database(err)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(err)
    }
}

/// Why a sink could not publish.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;
