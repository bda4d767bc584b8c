//! Creating the database a URL names, for `artisync up` on a fresh server.

use sqlx::Connection;

use crate::OpenError;

/// Creates the database named in `url` if it does not exist yet; answers
/// its name when it was created. The name must be letters, digits, `_`
/// or `-`: it goes into a `CREATE DATABASE` statement. The database is
/// made utf8mb4 with bytewise comparisons, as the schema expects.
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
    // Every server has information_schema, and every user may use it.
    let admin = options.clone().database("information_schema");
    let mut conn = sqlx::MySqlConnection::connect_with(&admin)
        .await
        .map_err(OpenError::Connect)?;
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(1 AS SIGNED) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(&name)
    .fetch_optional(&mut conn)
    .await
    .map_err(OpenError::Connect)?;
    let created = if exists.is_none() {
        // The name was checked above to hold no quoting characters.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )))
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
