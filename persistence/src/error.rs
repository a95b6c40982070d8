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
