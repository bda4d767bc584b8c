//! sqlx errors as the ports' [`StoreError`].

use artisync_ports::StoreError;

/// The backend's name in errors and logs.
pub const BACKEND: &str = "PostgreSQL";

/// A failure inside this backend: a database error, or a decision of the
/// store (not found, conflict ...). Internal functions return it so that
/// `?` works on sqlx calls; the ports see [`StoreError`].
#[derive(Debug)]
pub(crate) enum Error {
    Sql(sqlx::Error),
    Store(StoreError),
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Sql(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Sql(e) => db(e),
            Error::Store(e) => e,
        }
    }
}

/// A database error, with whether a retry makes sense: pool and socket
/// errors, SQLSTATE class 08 (connection exception), class 57 (operator
/// intervention: the backend was terminated, e.g. while old credentials
/// were revoked, or the server is shutting down), 53300 (too many
/// connections), 40001 and 40P01 (serialization failure, deadlock).
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    let retryable = match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("57")
                || c == "53300"
                || c == "40001"
                || c == "40P01"
        }),
        _ => false,
    };
    StoreError::Unavailable {
        backend: BACKEND,
        message: e.to_string(),
        retryable,
    }
}
