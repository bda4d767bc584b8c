//! Throwaway PostgreSQL databases, so that every test owns its schema.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// The server tests use: `TEST_DATABASE_URL`, else `DATABASE_URL`, else the
/// local one.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one test and dropped (with its connections)
/// when this value is dropped, even if the test panics.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates an empty database with the schema migrated.
    pub async fn create() -> Result<Self, sqlx::Error> {
        let db = Self::create_empty().await?;
        let pool = db.pool().await?;
        artisync_postgres::MIGRATOR.run(&pool).await?;
        pool.close().await;
        Ok(db)
    }

    /// Creates an empty database without running migrations.
    pub async fn create_empty() -> Result<Self, sqlx::Error> {
        let admin_url = server_url();
        let name = format!("artisync_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await?;
        // The name is generated here from a UUID, never from input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let url = options_to_url(&admin_url, &name);
        Ok(TestDatabase {
            name,
            url,
            admin_url,
        })
    }

    pub async fn pool(&self) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(10)
            .connect(&self.url)
            .await
    }
}

/// `server_url` with its database (the path) replaced by `database`.
pub fn with_database(server_url: &str, database: &str) -> String {
    options_to_url(server_url, database)
}

/// Replaces the database name (the last path segment) of a URL.
fn options_to_url(server_url: &str, database: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside or outside a runtime; a helper thread with
        // its own runtime works in both cases.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::options_to_url;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            options_to_url("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(options_to_url("postgres://h", "x"), "postgres://h/x");
    }
}
