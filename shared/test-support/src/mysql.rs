//! Throwaway MySQL / MariaDB databases (and users), so that every test
//! owns its schema.

use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::{Connection, MySqlConnection};

/// The server tests use: `TEST_MYSQL_URL`, else the local MariaDB as root.
pub fn server_url() -> String {
    std::env::var("TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A database created for one test and dropped (its connections killed)
/// when this value is dropped, even if the test panics.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

async fn admin(url: &str) -> Result<MySqlConnection, sqlx::Error> {
    let options: MySqlConnectOptions = url.parse()?;
    MySqlConnection::connect_with(&options).await
}

impl TestDatabase {
    /// Creates an empty database with the schema migrated.
    pub async fn create() -> Result<Self, sqlx::Error> {
        let db = Self::create_empty().await?;
        let pool = db.pool().await?;
        artisync_mysql::migrate(&pool)
            .await
            .map_err(|e| sqlx::Error::Configuration(e.to_string().into()))?;
        pool.close().await;
        Ok(db)
    }

    /// Creates an empty database without running migrations.
    pub async fn create_empty() -> Result<Self, sqlx::Error> {
        let admin_url = server_url();
        let name = format!("artisync_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin(&admin_url).await?;
        // The name is generated here from a UUID, never from input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        let url = crate::postgres::with_database(&admin_url, &name);
        Ok(TestDatabase {
            name,
            url,
            admin_url,
        })
    }

    /// A pool as the services open it (READ COMMITTED sessions).
    pub async fn pool(&self) -> Result<MySqlPool, sqlx::Error> {
        let options: MySqlConnectOptions = self.url.parse()?;
        artisync_mysql::pool_options()
            .max_connections(10)
            .connect_with(options)
            .await
    }

    /// Creates a user that may do anything in this database, and only
    /// here; dropped when the returned value is. Any user of that name is
    /// dropped first (left over by a test that was killed).
    pub async fn create_user(&self, user: &str, password: &str) -> Result<TestUser, sqlx::Error> {
        if user.is_empty() || !user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(sqlx::Error::Configuration(
                format!("test user name {user:?}: letters, digits and '_' only").into(),
            ));
        }
        let mut conn = admin(&self.admin_url).await?;
        let hosts = ["%", "localhost"];
        for host in hosts {
            // Account names and passwords cannot be bound: the name was
            // checked above, the password is quoted.
            for statement in [
                format!("DROP USER IF EXISTS '{user}'@'{host}'"),
                format!(
                    "CREATE USER '{user}'@'{host}' IDENTIFIED BY {}",
                    quote(password)
                ),
                format!(
                    "GRANT ALL PRIVILEGES ON `{}`.* TO '{user}'@'{host}'",
                    self.name
                ),
            ] {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut conn)
                    .await?;
            }
        }
        conn.close().await?;
        Ok(TestUser {
            user: user.to_owned(),
            hosts: hosts.map(str::to_owned).to_vec(),
            admin_url: self.admin_url.clone(),
        })
    }
}

/// A MySQL string literal: quotes doubled, backslashes escaped.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Runs `f` on a helper thread with its own runtime: `Drop` may run
/// inside or outside a runtime.
fn on_helper_thread<F>(f: F)
where
    F: FnOnce(tokio::runtime::Runtime) + Send + 'static,
{
    let handle = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            f(rt);
        }
    });
    let _ = handle.join();
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        on_helper_thread(move |rt| {
            rt.block_on(async move {
                let Ok(mut conn) = admin(&admin_url).await else {
                    return;
                };
                // As PostgreSQL's DROP DATABASE … WITH (FORCE): connections
                // still in the database would hold its tables.
                let ids: Vec<u64> = sqlx::query_scalar(
                    "SELECT CAST(ID AS UNSIGNED) FROM information_schema.PROCESSLIST
                     WHERE DB = ? AND ID <> CONNECTION_ID()",
                )
                .bind(&name)
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
                for id in ids {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL {id}")))
                        .execute(&mut conn)
                        .await;
                }
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS `{name}`"
                )))
                .execute(&mut conn)
                .await;
                let _ = conn.close().await;
            });
        });
    }
}

/// A user made by [`TestDatabase::create_user`].
pub struct TestUser {
    pub user: String,
    hosts: Vec<String>,
    admin_url: String,
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let user = self.user.clone();
        let hosts = self.hosts.clone();
        on_helper_thread(move |rt| {
            rt.block_on(async move {
                let Ok(mut conn) = admin(&admin_url).await else {
                    return;
                };
                for host in hosts {
                    // Checked to be letters, digits and '_' at creation.
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP USER IF EXISTS '{user}'@'{host}'"
                    )))
                    .execute(&mut conn)
                    .await;
                }
                let _ = conn.close().await;
            });
        });
    }
}
