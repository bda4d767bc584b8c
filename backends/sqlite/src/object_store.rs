//! [`ObjectStore`] on SQLite. Reads go to the readers; every write runs in
//! the one writer, where a read followed by a write is atomic (nothing
//! else writes in between), so compare-and-set needs no extra locking.
//! Expiry instants are microseconds; a row past its TTL is absent.

use artisync_ports::object_store::{
    Found, ItemValue, Precondition, ROLLING_REFRESH_FRACTION, Store, StoreRef, StoredItem,
    ValueType, WriteOutcome,
};
use artisync_ports::{ObjectStore, StoreError};
use async_trait::async_trait;
use sqlx::{Row, SqliteConnection, SqliteExecutor};

use crate::SqliteBackend;
use crate::artifacts::next_counter;
use crate::error::{BACKEND, Result, db};
use crate::time::now;

const MICROS: i64 = 1_000_000;

/// An owned copy of a [`StoreRef`], to move into the writer.
#[derive(Clone)]
struct StoreKey {
    org_id: String,
    env_id: String,
    store_id: String,
}

impl From<StoreRef<'_>> for StoreKey {
    fn from(s: StoreRef<'_>) -> Self {
        StoreKey {
            org_id: s.org_id.to_owned(),
            env_id: s.env_id.to_owned(),
            store_id: s.store_id.to_owned(),
        }
    }
}

/// The store's row id and default TTL (seconds).
async fn find_store<'e>(e: impl SqliteExecutor<'e>, s: &StoreKey) -> Result<Option<(i64, i64)>> {
    let row = sqlx::query(
        "SELECT id, default_ttl_seconds FROM stores WHERE org_id = ?1 AND env_id = ?2 AND name = ?3",
    )
    .bind(&s.org_id)
    .bind(&s.env_id)
    .bind(&s.store_id)
    .fetch_optional(e)
    .await?;
    Ok(match row {
        Some(r) => Some((r.try_get("id")?, r.try_get("default_ttl_seconds")?)),
        None => None,
    })
}

fn store_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Store> {
    Ok(Store {
        store_id: r.try_get("name")?,
        default_ttl_seconds: r.try_get("default_ttl_seconds")?,
        is_fixed_ttl: r.try_get("is_fixed_ttl")?,
        persistent: r.try_get("persistent")?,
        encrypted: r.try_get("encrypted")?,
    })
}

/// The live item's id and version, if any.
async fn live_item(
    c: &mut SqliteConnection,
    store: i64,
    partition: &str,
    key: &str,
) -> Result<Option<(i64, i64)>> {
    let row = sqlx::query(
        "SELECT id, version FROM items
         WHERE store_id = ?1 AND partition = ?2 AND key = ?3 AND ttl > ?4",
    )
    .bind(store)
    .bind(partition)
    .bind(key)
    .bind(now())
    .fetch_optional(&mut *c)
    .await?;
    Ok(match row {
        Some(r) => Some((r.try_get("id")?, r.try_get("version")?)),
        None => None,
    })
}

/// Inserts or overwrites (an expired row is replaced in place); every
/// write restarts the TTL and takes a new version.
async fn write_item(
    c: &mut SqliteConnection,
    store: i64,
    ttl_seconds: i64,
    partition: &str,
    key: &str,
    value: &ItemValue,
) -> Result<i64> {
    let version = next_counter(c, "item_version").await?;
    let at = now();
    sqlx::query(
        "INSERT INTO items (key, partition, store_id, value_type, value, version, ttl, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (key, store_id, partition) DO UPDATE SET
             value_type = excluded.value_type, value = excluded.value,
             version = excluded.version, ttl = excluded.ttl,
             created_at = CASE WHEN items.ttl <= ?8 THEN ?8 ELSE items.created_at END,
             updated_at = ?8",
    )
    .bind(key)
    .bind(partition)
    .bind(store)
    .bind(value.value_type.as_str())
    .bind(&value.bytes)
    .bind(version)
    .bind(at + ttl_seconds * MICROS)
    .bind(at)
    .execute(&mut *c)
    .await?;
    Ok(version)
}

fn versions_match(precondition: &Precondition, version: i64) -> bool {
    match precondition {
        Precondition::None | Precondition::Exists => true,
        Precondition::Versions(v) => v.contains(&version),
    }
}

impl SqliteBackend {
    async fn write<T, F>(&self, change: F) -> std::result::Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut SqliteConnection,
            ) -> futures_util::future::BoxFuture<'c, Result<T>>
            + Send
            + 'static,
    {
        self.inner.writer.write(false, change).await
    }
}

#[async_trait]
impl ObjectStore for SqliteBackend {
    async fn put_store(
        &self,
        org_id: &str,
        env_id: &str,
        store: &Store,
    ) -> std::result::Result<(), StoreError> {
        let (org_id, env_id, store) = (org_id.to_owned(), env_id.to_owned(), store.clone());
        self.write(move |c| {
            Box::pin(async move {
                let at = now();
                sqlx::query(
                    "INSERT INTO stores (name, org_id, env_id, default_ttl_seconds, is_fixed_ttl,
                                         persistent, encrypted, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                     ON CONFLICT (name, org_id, env_id) DO UPDATE SET
                         default_ttl_seconds = excluded.default_ttl_seconds,
                         is_fixed_ttl = excluded.is_fixed_ttl, persistent = excluded.persistent,
                         encrypted = excluded.encrypted, updated_at = excluded.updated_at",
                )
                .bind(&store.store_id)
                .bind(&org_id)
                .bind(&env_id)
                .bind(store.default_ttl_seconds)
                .bind(store.is_fixed_ttl)
                .bind(store.persistent)
                .bind(store.encrypted)
                .bind(at)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn get_store(&self, s: StoreRef<'_>) -> std::result::Result<Option<Store>, StoreError> {
        let row = sqlx::query(
            "SELECT name, default_ttl_seconds, is_fixed_ttl, persistent, encrypted
             FROM stores WHERE org_id = ?1 AND env_id = ?2 AND name = ?3",
        )
        .bind(s.org_id)
        .bind(s.env_id)
        .bind(s.store_id)
        .fetch_optional(&self.inner.readers)
        .await
        .map_err(db)?;
        Ok(row.as_ref().map(store_from_row).transpose()?)
    }

    async fn list_stores(
        &self,
        org_id: &str,
        env_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> std::result::Result<Vec<Store>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, default_ttl_seconds, is_fixed_ttl, persistent, encrypted
             FROM stores WHERE org_id = ?1 AND env_id = ?2 AND name > coalesce(?3, '')
             ORDER BY name LIMIT ?4",
        )
        .bind(org_id)
        .bind(env_id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.inner.readers)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(store_from_row)
            .collect::<Result<Vec<_>>>()?)
    }

    async fn delete_store(&self, s: StoreRef<'_>) -> std::result::Result<bool, StoreError> {
        let s = StoreKey::from(s);
        self.write(move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "DELETE FROM stores WHERE org_id = ?1 AND env_id = ?2 AND name = ?3",
                )
                .bind(&s.org_id)
                .bind(&s.env_id)
                .bind(&s.store_id)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    async fn list_partitions(
        &self,
        s: StoreRef<'_>,
        after: Option<&str>,
        limit: i64,
    ) -> std::result::Result<Found<Vec<String>>, StoreError> {
        let readers = &self.inner.readers;
        let Some((store, _)) = find_store(readers, &StoreKey::from(s)).await? else {
            return Ok(Found::NoStore);
        };
        let names = sqlx::query_scalar(
            "SELECT DISTINCT partition FROM items
             WHERE store_id = ?1 AND partition > coalesce(?2, '') AND ttl > ?3
             ORDER BY partition LIMIT ?4",
        )
        .bind(store)
        .bind(after)
        .bind(now())
        .bind(limit + 1)
        .fetch_all(readers)
        .await
        .map_err(db)?;
        Ok(Found::Present(names))
    }

    async fn delete_partition(
        &self,
        s: StoreRef<'_>,
        partition: &str,
    ) -> std::result::Result<Found<i64>, StoreError> {
        let (s, partition) = (StoreKey::from(s), partition.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let Some((store, _)) = find_store(&mut *c, &s).await? else {
                    return Ok(Found::NoStore);
                };
                let live: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM items WHERE store_id = ?1 AND partition = ?2 AND ttl > ?3",
                )
                .bind(store)
                .bind(&partition)
                .bind(now())
                .fetch_one(&mut *c)
                .await?;
                sqlx::query("DELETE FROM items WHERE store_id = ?1 AND partition = ?2")
                    .bind(store)
                    .bind(&partition)
                    .execute(&mut *c)
                    .await?;
                Ok(if live == 0 {
                    Found::Absent
                } else {
                    Found::Present(live)
                })
            })
        })
        .await
    }

    async fn list_keys(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        after: Option<&str>,
        limit: i64,
    ) -> std::result::Result<Found<Vec<String>>, StoreError> {
        let readers = &self.inner.readers;
        let Some((store, _)) = find_store(readers, &StoreKey::from(s)).await? else {
            return Ok(Found::NoStore);
        };
        let keys = sqlx::query_scalar(
            "SELECT key FROM items
             WHERE store_id = ?1 AND partition = ?2 AND ttl > ?3 AND key > coalesce(?4, '')
             ORDER BY key LIMIT ?5",
        )
        .bind(store)
        .bind(partition)
        .bind(now())
        .bind(after)
        .bind(limit + 1)
        .fetch_all(readers)
        .await
        .map_err(db)?;
        Ok(Found::Present(keys))
    }

    async fn get_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
    ) -> std::result::Result<Found<StoredItem>, StoreError> {
        let at = now();
        let row = sqlx::query(
            "SELECT s.default_ttl_seconds, s.is_fixed_ttl, i.id, i.value_type, i.value, i.version, i.ttl
             FROM stores s
             LEFT JOIN items i
               ON i.store_id = s.id AND i.partition = ?4 AND i.key = ?5 AND i.ttl > ?6
             WHERE s.org_id = ?1 AND s.env_id = ?2 AND s.name = ?3",
        )
        .bind(s.org_id)
        .bind(s.env_id)
        .bind(s.store_id)
        .bind(partition)
        .bind(key)
        .bind(at)
        .fetch_optional(&self.inner.readers)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(Found::NoStore);
        };
        let get = |name: &str| -> std::result::Result<Option<i64>, StoreError> {
            row.try_get(name).map_err(db)
        };
        let (Some(id), Some(version), Some(ttl)) = (get("id")?, get("version")?, get("ttl")?)
        else {
            return Ok(Found::Absent);
        };
        let ttl_seconds: i64 = row.try_get("default_ttl_seconds").map_err(db)?;
        let fixed: bool = row.try_get("is_fixed_ttl").map_err(db)?;
        let value_type: String = row.try_get("value_type").map_err(db)?;
        let value: Vec<u8> = row.try_get("value").map_err(db)?;
        let refresh_after = ((ttl_seconds * MICROS) as f64 * ROLLING_REFRESH_FRACTION) as i64;
        if !fixed && at + ttl_seconds * MICROS - ttl > refresh_after {
            // Rolling TTL: extend, unless it expired or was rewritten meanwhile.
            self.write(move |c| {
                Box::pin(async move {
                    let at = now();
                    sqlx::query(
                        "UPDATE items SET ttl = ?2 WHERE id = ?1 AND ttl > ?3 AND version = ?4",
                    )
                    .bind(id)
                    .bind(at + ttl_seconds * MICROS)
                    .bind(at)
                    .bind(version)
                    .execute(&mut *c)
                    .await?;
                    Ok(())
                })
            })
            .await?;
        }
        Ok(Found::Present(StoredItem {
            value_type: ValueType::parse(&value_type).ok_or_else(|| {
                StoreError::broken(BACKEND, format!("stored value type {value_type:?}"))
            })?,
            value,
            version,
        }))
    }

    async fn upsert_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        value: &ItemValue,
    ) -> std::result::Result<Option<i64>, StoreError> {
        let (s, partition, key, value) = (
            StoreKey::from(s),
            partition.to_owned(),
            key.to_owned(),
            value.clone(),
        );
        self.write(move |c| {
            Box::pin(async move {
                let Some((store, ttl)) = find_store(&mut *c, &s).await? else {
                    return Ok(None);
                };
                Ok(Some(
                    write_item(c, store, ttl, &partition, &key, &value).await?,
                ))
            })
        })
        .await
    }

    async fn insert_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        value: &ItemValue,
    ) -> std::result::Result<WriteOutcome, StoreError> {
        let (s, partition, key, value) = (
            StoreKey::from(s),
            partition.to_owned(),
            key.to_owned(),
            value.clone(),
        );
        self.write(move |c| {
            Box::pin(async move {
                let Some((store, ttl)) = find_store(&mut *c, &s).await? else {
                    return Ok(WriteOutcome::NoStore);
                };
                if live_item(c, store, &partition, &key).await?.is_some() {
                    return Ok(WriteOutcome::Rejected);
                }
                Ok(WriteOutcome::Done(
                    write_item(c, store, ttl, &partition, &key, &value).await?,
                ))
            })
        })
        .await
    }

    async fn update_item_if(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        value: &ItemValue,
        versions: Option<&[i64]>,
    ) -> std::result::Result<WriteOutcome, StoreError> {
        let (s, partition, key, value) = (
            StoreKey::from(s),
            partition.to_owned(),
            key.to_owned(),
            value.clone(),
        );
        let precondition = match versions {
            Some(v) => Precondition::Versions(v.to_vec()),
            None => Precondition::Exists,
        };
        self.write(move |c| {
            Box::pin(async move {
                let Some((store, ttl)) = find_store(&mut *c, &s).await? else {
                    return Ok(WriteOutcome::NoStore);
                };
                match live_item(c, store, &partition, &key).await? {
                    Some((_, version)) if versions_match(&precondition, version) => {
                        Ok(WriteOutcome::Done(
                            write_item(c, store, ttl, &partition, &key, &value).await?,
                        ))
                    }
                    _ => Ok(WriteOutcome::Rejected),
                }
            })
        })
        .await
    }

    async fn delete_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        precondition: &Precondition,
    ) -> std::result::Result<WriteOutcome, StoreError> {
        let (s, partition, key, precondition) = (
            StoreKey::from(s),
            partition.to_owned(),
            key.to_owned(),
            precondition.clone(),
        );
        self.write(move |c| {
            Box::pin(async move {
                let Some((store, _)) = find_store(&mut *c, &s).await? else {
                    return Ok(WriteOutcome::NoStore);
                };
                let live = live_item(c, store, &partition, &key).await?;
                let matched = live.is_some_and(|(_, v)| versions_match(&precondition, v));
                if precondition == Precondition::None || matched {
                    // Without a condition an expired row goes too (it was
                    // invisible anyway) but answers as absent.
                    sqlx::query(
                        "DELETE FROM items WHERE store_id = ?1 AND partition = ?2 AND key = ?3",
                    )
                    .bind(store)
                    .bind(&partition)
                    .bind(&key)
                    .execute(&mut *c)
                    .await?;
                }
                Ok(if matched {
                    WriteOutcome::Done(0)
                } else {
                    WriteOutcome::Rejected
                })
            })
        })
        .await
    }

    async fn purge_expired_batch(&self, batch: i64) -> std::result::Result<u64, StoreError> {
        self.write(move |c| {
            Box::pin(async move {
                let at = now();
                let done = sqlx::query(
                    "DELETE FROM items WHERE id IN (SELECT id FROM items WHERE ttl < ?1 LIMIT ?2)",
                )
                .bind(at)
                .bind(batch)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn check_ready(&self) -> std::result::Result<(), StoreError> {
        sqlx::query(
            "SELECT (SELECT count(*) FROM (SELECT id, name, org_id, env_id, default_ttl_seconds,
                                                  is_fixed_ttl, persistent, encrypted
                                           FROM stores LIMIT 0)),
                    (SELECT count(*) FROM (SELECT id, key, partition, store_id, value_type, value,
                                                  version, ttl FROM items LIMIT 0))",
        )
        .execute(&self.inner.readers)
        .await
        .map(|_| ())
        .map_err(db)
    }
}
