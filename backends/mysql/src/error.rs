//! sqlx errors as the ports' [`StoreError`].

use artisync_ports::StoreError;

/// The backend's name in errors and logs.
pub const BACKEND: &str = "MySQL";

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

/// Server error numbers that a later attempt may not repeat.
mod numbers {
    /// Too many connections.
    pub const CON_COUNT: u16 = 1040;
    /// The server is shutting down.
    pub const SERVER_SHUTDOWN: u16 = 1053;
    /// Lock wait timeout exceeded.
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    /// Deadlock found when trying to get lock.
    pub const LOCK_DEADLOCK: u16 = 1213;
    /// The server runs with --read-only (a failover in progress).
    pub const READ_ONLY: u16 = 1290;
    /// Query execution was interrupted (KILL QUERY).
    pub const QUERY_INTERRUPTED: u16 = 1317;
    /// Prepared statement needs to be re-prepared.
    pub const NEED_REPREPARE: u16 = 1615;
    /// Connection was killed (MariaDB).
    pub const CONNECTION_KILLED: u16 = 1927;
    /// Client disconnected for inactivity (MySQL 8).
    pub const CLIENT_INTERACTION_TIMEOUT: u16 = 4031;
}

fn retryable_number(n: u16) -> bool {
    use numbers::*;
    matches!(
        n,
        CON_COUNT
            | SERVER_SHUTDOWN
            | LOCK_WAIT_TIMEOUT
            | LOCK_DEADLOCK
            | READ_ONLY
            | QUERY_INTERRUPTED
            | NEED_REPREPARE
            | CONNECTION_KILLED
            | CLIENT_INTERACTION_TIMEOUT
    )
}

/// Whether the same call may succeed later: pool and socket errors,
/// SQLSTATE class 08 (connection exception) and 40001 (serialization
/// failure, deadlock), and the server errors of [`numbers`].
pub(crate) fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let mysql = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>();
            let by_number = mysql.is_some_and(|m| retryable_number(m.number()));
            let by_state = db
                .code()
                .is_some_and(|c| c.starts_with("08") || c == "40001");
            by_number || by_state
        }
        _ => false,
    }
}

/// A deadlock InnoDB broke by rolling this transaction back: running the
/// transaction again is the documented answer.
pub(crate) fn is_deadlock(e: &Error) -> bool {
    match e {
        Error::Sql(sqlx::Error::Database(db)) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|m| m.number() == numbers::LOCK_DEADLOCK),
        _ => false,
    }
}

/// Whether waiting for the server at start-up makes sense (it may still
/// be starting); a wrong password or an unknown database does not get
/// better by waiting.
pub(crate) fn worth_waiting_for(e: &sqlx::Error) -> bool {
    is_retryable(e)
}

/// A database error, with whether a retry makes sense.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        retryable: is_retryable(&e),
        message: e.to_string(),
    }
}

/// The number of a server error (1062 for a duplicate key ...).
pub(crate) fn number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

/// Duplicate entry for a unique key.
pub(crate) const DUP_ENTRY: u16 = 1062;
