//! Opening the database file: refuse what is not ours, create what is
//! missing, migrate, and tune every connection the same way.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::{APPLICATION_ID, MIGRATOR};

/// Readers a process keeps open; WAL lets them all read while the writer
/// writes.
const READERS: u32 = 8;
/// How long a statement waits for a lock (a checkpoint, another process)
/// before it fails as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use the database directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a SQLite database ({why}); artisync will not touch it")]
    NotSqlite { path: PathBuf, why: String },
    #[error(
        "{path} is a SQLite database of another program (application_id {found:#x}); artisync will not touch it"
    )]
    ForeignDatabase { path: PathBuf, found: i32 },
    #[error("cannot open the SQLite database {path}: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("cannot migrate the SQLite database {path}: {source}")]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
}

/// The first 16 bytes of every SQLite 3 database file.
const HEADER: &[u8; 16] = b"SQLite format 3\0";

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        // Every commit is synced before it is answered (see the crate doc).
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .disable_statement_logging()
}

/// Refuses a file that is not a SQLite database at all.
fn check_header(path: &Path) -> Result<(), OpenError> {
    let not_sqlite = |why: String| OpenError::NotSqlite {
        path: path.to_owned(),
        why,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(not_sqlite(format!("cannot read it: {e}"))),
    };
    let mut header = [0u8; 16];
    match file.read(&mut header) {
        // A new, empty file (touch) is fine: SQLite makes it a database.
        Ok(0) => Ok(()),
        Ok(16) if &header == HEADER => Ok(()),
        Ok(_) => Err(not_sqlite("its first bytes are not a SQLite header".into())),
        Err(e) => Err(not_sqlite(format!("cannot read it: {e}"))),
    }
}

/// `None` when the database is artisync's or empty (ours to claim), else
/// the application id it carries.
async fn is_ours(c: &mut SqliteConnection) -> Result<Option<i32>, sqlx::Error> {
    let found: i32 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut *c)
        .await?;
    if found == APPLICATION_ID {
        return Ok(None);
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_one(&mut *c)
    .await?;
    Ok((found != 0 || tables > 0).then_some(found))
}

/// Opens the write connection (migrated) and the readers.
pub async fn open(path: &Path) -> Result<(SqlitePool, SqliteConnection), OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
            path: dir.to_owned(),
            source,
        })?;
    }
    check_header(path)?;
    let fail = |source| OpenError::Open {
        path: path.to_owned(),
        source,
    };
    // Looked at as it is first: the writer's settings (WAL) would change
    // the file of another program before it could be refused.
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        let mut look = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .connect()
            .await
            .map_err(fail)?;
        let mine = is_ours(&mut look).await.map_err(fail);
        let _ = look.close().await;
        if let Some(found) = mine? {
            return Err(OpenError::ForeignDatabase {
                path: path.to_owned(),
                found,
            });
        }
    }
    let mut writer = options(path)
        .create_if_missing(true)
        .connect()
        .await
        .map_err(fail)?;
    let found: i32 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut writer)
        .await
        .map_err(fail)?;
    if found != APPLICATION_ID {
        // A new database: claim it.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PRAGMA application_id = {APPLICATION_ID}"
        )))
        .execute(&mut writer)
        .await
        .map_err(fail)?;
    }
    // Through a pool of one: a migration on `&mut SqliteConnection` makes
    // every caller's future lose `Send` (sqlx's `Acquire` is not general
    // enough there).
    let migrations = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options(path))
        .await
        .map_err(fail)?;
    let migrated = MIGRATOR.run(&migrations).await;
    migrations.close().await;
    migrated.map_err(|source| OpenError::Migrate {
        path: path.to_owned(),
        source,
    })?;
    let readers = SqlitePoolOptions::new()
        .max_connections(READERS)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options(path).read_only(true))
        .await
        .map_err(fail)?;
    Ok((readers, writer))
}
