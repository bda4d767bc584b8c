//! TLS to the database (DESIGN.md §16): a PostgreSQL URL with `sslmode`
//! opens every port over TLS, and `verify-full` with a CA that did not
//! sign the server's certificate is refused rather than connecting in the
//! clear or unverified.

use anyhow::ensure;
use artisync_backends::Storage;
use artisync_config::storage::{StorageOptions, StorageUrl};
use artisync_e2e::postgres::TestDatabase;
use sqlx::Connection;

fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// How many connections to `database` use TLS, as the server sees them.
async fn tls_connections(admin_url: &str, database: &str) -> anyhow::Result<i64> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = $1 AND s.ssl",
    )
    .bind(database)
    .fetch_one(&mut admin)
    .await?;
    admin.close().await?;
    Ok(n)
}

#[tokio::test]
async fn sslmode_require_opens_the_store_over_tls() -> anyhow::Result<()> {
    let db = TestDatabase::create_empty().await?;
    let url = StorageUrl::parse("database.url", &with_params(&db.url, "sslmode=require"))?;
    let storage = Storage::open(&url, &StorageOptions::default()).await?;
    // The migrations ran through it, and its pool is connected over TLS.
    let n = tls_connections(&artisync_e2e::postgres::server_url(), &db.name).await?;
    ensure!(n >= 1, "{n} TLS connections to the test database");
    storage.close().await;
    Ok(())
}

#[tokio::test]
async fn verify_full_with_a_foreign_ca_is_refused() -> anyhow::Result<()> {
    let db = TestDatabase::create_empty().await?;
    let ca = rcgen::generate_simple_self_signed(vec!["some-other-ca".to_owned()])?;
    let dir = std::env::temp_dir().join(format!("artisync-db-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem())?;
    let url = StorageUrl::parse(
        "database.url",
        &with_params(
            &db.url,
            &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()),
        ),
    )?;
    let options = StorageOptions {
        acquire_timeout: std::time::Duration::from_secs(3),
        ..StorageOptions::default()
    };
    let opened = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        Storage::open(&url, &options),
    )
    .await?;
    let _ = std::fs::remove_dir_all(&dir);
    match opened {
        Ok(storage) => {
            storage.close().await;
            anyhow::bail!("connected although the server's certificate is not signed by the CA")
        }
        Err(e) => {
            let message = format!("{e:#}");
            ensure!(
                message.to_lowercase().contains("certificate")
                    || message.to_lowercase().contains("tls"),
                "refused, but not for TLS: {message}"
            );
        }
    }
    Ok(())
}
