//! sqlx errors as the ports' [`StoreError`].

use artisync_ports::StoreError;

/// The backend's name in errors and logs.
pub const BACKEND: &str = "SQLite";

/// A failure inside this backend: a database error, or a decision of the
/// store. Internal functions return it so that `?` works on sqlx calls.
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

/// A database error, with whether a retry makes sense: the file busy or
/// locked (SQLITE_BUSY, SQLITE_LOCKED), out of space or I/O trouble
/// (SQLITE_FULL, SQLITE_IOERR), or the pool exhausted.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    let retryable = match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            let primary = c.parse::<i32>().map(|n| n & 0xff).unwrap_or(0);
            matches!(primary, 5 | 6 | 10 | 13)
        }),
        _ => false,
    };
    StoreError::Unavailable {
        backend: BACKEND,
        message: e.to_string(),
        retryable,
    }
}

/// Whether `e` is a UNIQUE violation naming `columns` (as SQLite words
/// it: `apis.context`, `apis.name, apis.version`).
pub(crate) fn is_unique_violation(e: &sqlx::Error, columns: &str) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.message().contains("UNIQUE constraint failed") && db.message().contains(columns)
        }
        _ => false,
    }
}
