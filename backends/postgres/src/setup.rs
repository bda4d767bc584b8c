//! Creating the database a URL names, for `artisync up` on a fresh server.

use sqlx::Connection;

use crate::OpenError;

/// Creates the database named in `url` if it does not exist yet; answers
/// its name when it was created. The name must be letters, digits, `_`
/// or `-`: it goes into a `CREATE DATABASE` statement.
pub async fn ensure_database(url: &str) -> Result<Option<String>, OpenError> {
    let options = crate::parse_url(url, "the database URL")?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(None);
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(OpenError::InvalidName(name));
    }
    let admin = options.clone().database("postgres");
    let mut conn = sqlx::PgConnection::connect_with(&admin)
        .await
        .map_err(OpenError::Connect)?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .map_err(OpenError::Connect)?;
    let created = if exists.is_none() {
        // The name was checked above to hold no quoting characters.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .map_err(OpenError::Connect)?;
        Some(name)
    } else {
        None
    };
    let _ = conn.close().await;
    Ok(created)
}
