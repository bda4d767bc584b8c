//! [`ObjectStore`] on PostgreSQL. Every write is one statement: atomicity
//! comes from PostgreSQL (`ON CONFLICT`, conditional `UPDATE`/`DELETE`),
//! never from a read followed by a write. Item statements look the store up
//! in a CTE, so the common request costs one round trip.
//!
//! Keyset cursors are written `name > coalesce($n, '')` rather than
//! `($n IS NULL OR name > $n)`: names are never empty, and the former stays
//! an index range condition even in a generic prepared-statement plan.

use artisync_ports::object_store::{
    Found, ItemValue, Precondition, ROLLING_REFRESH_FRACTION, Store, StoreRef, StoredItem,
    ValueType, WriteOutcome,
};
use artisync_ports::{ObjectStore, StoreError};
use async_trait::async_trait;
use sqlx::PgPool;

use crate::PgBackend;
use crate::error::{BACKEND, db};

fn write_outcome(store: Option<i64>, version: Option<i64>) -> WriteOutcome {
    match (store, version) {
        (None, _) => WriteOutcome::NoStore,
        (Some(_), None) => WriteOutcome::Rejected,
        (Some(_), Some(v)) => WriteOutcome::Done(v),
    }
}

// ---------------------------------------------------------------- stores

async fn put_store(
    pool: &PgPool,
    org_id: &str,
    env_id: &str,
    store: &Store,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stores (name, org_id, env_id, default_ttl_seconds, is_fixed_ttl, persistent, encrypted)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name, org_id, env_id) DO UPDATE SET
             default_ttl_seconds = EXCLUDED.default_ttl_seconds,
             is_fixed_ttl = EXCLUDED.is_fixed_ttl,
             persistent = EXCLUDED.persistent,
             encrypted = EXCLUDED.encrypted,
             updated_at = now()",
    )
    .bind(&store.store_id)
    .bind(org_id)
    .bind(env_id)
    .bind(store.default_ttl_seconds)
    .bind(store.is_fixed_ttl)
    .bind(store.persistent)
    .bind(store.encrypted)
    .execute(pool)
    .await?;
    Ok(())
}

type StoreRow = (String, i32, bool, bool, bool);

fn store_from_row(
    (store_id, default_ttl_seconds, is_fixed_ttl, persistent, encrypted): StoreRow,
) -> Store {
    Store {
        store_id,
        default_ttl_seconds,
        is_fixed_ttl,
        persistent,
        encrypted,
    }
}

async fn get_store(pool: &PgPool, s: StoreRef<'_>) -> Result<Option<Store>, sqlx::Error> {
    let row: Option<StoreRow> = sqlx::query_as(
        "SELECT name, default_ttl_seconds, is_fixed_ttl, persistent, encrypted
         FROM stores WHERE org_id = $1 AND env_id = $2 AND name = $3",
    )
    .bind(s.org_id)
    .bind(s.env_id)
    .bind(s.store_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(store_from_row))
}

/// Lists stores by name after `after`; fetches one more than `limit` so the
/// caller knows whether another page exists.
async fn list_stores(
    pool: &PgPool,
    org_id: &str,
    env_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Store>, sqlx::Error> {
    let rows: Vec<StoreRow> = sqlx::query_as(
        "SELECT name, default_ttl_seconds, is_fixed_ttl, persistent, encrypted
         FROM stores
         WHERE org_id = $1 AND env_id = $2 AND name > coalesce($3, '')
         ORDER BY name
         LIMIT $4",
    )
    .bind(org_id)
    .bind(env_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(store_from_row).collect())
}

/// Deletes a store and (by `ON DELETE CASCADE`, in the same transaction)
/// all its items. Returns whether it existed.
async fn delete_store(pool: &PgPool, s: StoreRef<'_>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM stores WHERE org_id = $1 AND env_id = $2 AND name = $3")
        .bind(s.org_id)
        .bind(s.env_id)
        .bind(s.store_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

async fn store_pk(pool: &PgPool, s: StoreRef<'_>) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM stores WHERE org_id = $1 AND env_id = $2 AND name = $3")
        .bind(s.org_id)
        .bind(s.env_id)
        .bind(s.store_id)
        .fetch_optional(pool)
        .await
}

// ------------------------------------------------------------ partitions

/// Distinct partitions holding at least one live item, after `after`.
/// A loose index scan (one index probe per partition via the recursive
/// CTE) instead of `SELECT DISTINCT`, which would read every item of the
/// store. Fetches `limit + 1`.
async fn list_partitions(
    pool: &PgPool,
    store_pk: i64,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE p(partition) AS (
             (SELECT partition FROM items
              WHERE store_id = $1 AND partition > coalesce($2, '') AND ttl > now()
              ORDER BY partition LIMIT 1)
             UNION ALL
             SELECT (SELECT i.partition FROM items i
                     WHERE i.store_id = $1 AND i.partition > p.partition AND i.ttl > now()
                     ORDER BY i.partition LIMIT 1)
             FROM p WHERE p.partition IS NOT NULL
         )
         SELECT partition FROM p WHERE partition IS NOT NULL LIMIT $3",
    )
    .bind(store_pk)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await
}

/// Deletes every item of a partition in one statement (atomic). Returns
/// how many live items it held.
async fn delete_partition(
    pool: &PgPool,
    s: StoreRef<'_>,
    partition: &str,
) -> Result<Found<i64>, sqlx::Error> {
    let (store, live): (Option<i64>, i64) = sqlx::query_as(
        "WITH s AS (SELECT id FROM stores WHERE org_id = $1 AND env_id = $2 AND name = $3),
              d AS (DELETE FROM items i USING s
                    WHERE i.store_id = s.id AND i.partition = $4
                    RETURNING i.ttl > now() AS live)
         SELECT (SELECT id FROM s), (SELECT count(*) FROM d WHERE live)",
    )
    .bind(s.org_id)
    .bind(s.env_id)
    .bind(s.store_id)
    .bind(partition)
    .fetch_one(pool)
    .await?;
    Ok(match (store, live) {
        (None, _) => Found::NoStore,
        (Some(_), 0) => Found::Absent,
        (Some(_), n) => Found::Present(n),
    })
}

// ----------------------------------------------------------------- items

/// Live keys of a partition after `after`, in byte order. Fetches `limit + 1`.
async fn list_keys(
    pool: &PgPool,
    store_pk: i64,
    partition: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT key FROM items
         WHERE store_id = $1 AND partition = $2 AND ttl > now()
           AND key > coalesce($3, '')
         ORDER BY key
         LIMIT $4",
    )
    .bind(store_pk)
    .bind(partition)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await
}

/// Reads a live item; with a rolling TTL, extends it when more than
/// [`ROLLING_REFRESH_FRACTION`] of the TTL has elapsed.
async fn get_item(
    pool: &PgPool,
    s: StoreRef<'_>,
    partition: &str,
    key: &str,
) -> Result<Found<(String, Vec<u8>, i64)>, sqlx::Error> {
    type Row = (
        i32,
        bool,
        Option<i64>,
        Option<String>,
        Option<Vec<u8>>,
        Option<i64>,
        Option<bool>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.default_ttl_seconds, s.is_fixed_ttl,
                i.id, i.value_type, i.value, i.version,
                i.ttl < now() + make_interval(secs => s.default_ttl_seconds * $6::float8)
         FROM stores s
         LEFT JOIN items i
           ON i.store_id = s.id AND i.partition = $4 AND i.key = $5 AND i.ttl > now()
         WHERE s.org_id = $1 AND s.env_id = $2 AND s.name = $3",
    )
    .bind(s.org_id)
    .bind(s.env_id)
    .bind(s.store_id)
    .bind(partition)
    .bind(key)
    .bind(1.0 - ROLLING_REFRESH_FRACTION)
    .fetch_optional(pool)
    .await?;
    let Some((ttl_seconds, fixed, id, value_type, value, version, stale)) = row else {
        return Ok(Found::NoStore);
    };
    let (Some(id), Some(value_type), Some(value), Some(version)) = (id, value_type, value, version)
    else {
        return Ok(Found::Absent);
    };
    if !fixed && stale == Some(true) {
        // Conditional again in SQL: among concurrent readers of a stale
        // item, the first extends it and the others' UPDATE matches nothing.
        sqlx::query(
            "UPDATE items SET ttl = now() + make_interval(secs => $2::float8)
             WHERE id = $1 AND ttl > now()
               AND ttl < now() + make_interval(secs => $2::float8 * $3::float8)",
        )
        .bind(id)
        .bind(f64::from(ttl_seconds))
        .bind(1.0 - ROLLING_REFRESH_FRACTION)
        .execute(pool)
        .await?;
    }
    Ok(Found::Present((value_type, value, version)))
}

/// `PUT` without condition: insert or overwrite. `None` when the store
/// does not exist. Every write restarts the TTL (fixed and rolling alike).
async fn upsert_item(
    pool: &PgPool,
    s: StoreRef<'_>,
    partition: &str,
    key: &str,
    value: &ItemValue,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH s AS (SELECT id, default_ttl_seconds FROM stores
                    WHERE org_id = $1 AND env_id = $2 AND name = $3)
         INSERT INTO items (key, partition, store_id, value_type, value, ttl)
         SELECT $5, $4, s.id, $6, $7, now() + make_interval(secs => s.default_ttl_seconds)
         FROM s
         ON CONFLICT (key, store_id, partition) DO UPDATE SET
             value_type = EXCLUDED.value_type,
             value = EXCLUDED.value,
             ttl = EXCLUDED.ttl,
             version = nextval('item_version_seq'),
             created_at = CASE WHEN items.ttl <= now() THEN now() ELSE items.created_at END,
             updated_at = now()
         RETURNING version",
    )
    .bind(s.org_id)
    .bind(s.env_id)
    .bind(s.store_id)
    .bind(partition)
    .bind(key)
    .bind(value.value_type.as_str())
    .bind(&value.bytes)
    .fetch_optional(pool)
    .await
}

/// `POST` (and `PUT` with `If-None-Match: *`): insert only. One statement:
/// the unique constraint arbitrates concurrent inserts; a row that is
/// present but expired counts as absent and is replaced in place.
async fn insert_item(
    pool: &PgPool,
    s: StoreRef<'_>,
    partition: &str,
    key: &str,
    value: &ItemValue,
) -> Result<WriteOutcome, sqlx::Error> {
    let (store, version): (Option<i64>, Option<i64>) = sqlx::query_as(
        "WITH s AS (SELECT id, default_ttl_seconds FROM stores
                    WHERE org_id = $1 AND env_id = $2 AND name = $3),
              ins AS (
                 INSERT INTO items (key, partition, store_id, value_type, value, ttl)
                 SELECT $5, $4, s.id, $6, $7, now() + make_interval(secs => s.default_ttl_seconds)
                 FROM s
                 ON CONFLICT (key, store_id, partition) DO UPDATE SET
                     value_type = EXCLUDED.value_type,
                     value = EXCLUDED.value,
                     ttl = EXCLUDED.ttl,
                     version = nextval('item_version_seq'),
                     created_at = now(),
                     updated_at = now()
                 WHERE items.ttl <= now()
                 RETURNING version)
         SELECT (SELECT id FROM s), (SELECT version FROM ins)",
    )
    .bind(s.org_id)
    .bind(s.env_id)
    .bind(s.store_id)
    .bind(partition)
    .bind(key)
    .bind(value.value_type.as_str())
    .bind(&value.bytes)
    .fetch_one(pool)
    .await?;
    Ok(write_outcome(store, version))
}

/// `PUT` with `If-Match`: compare-and-set on the version. Under READ
/// COMMITTED a concurrent writer's UPDATE waits for ours and then re-checks
/// `version = ANY(..)` against the new row, so exactly one of two racing
/// writers with the same ETag wins.
async fn update_item_if(
    pool: &PgPool,
    s: StoreRef<'_>,
    partition: &str,
    key: &str,
    value: &ItemValue,
    versions: Option<&[i64]>,
) -> Result<WriteOutcome, sqlx::Error> {
    let (store, version): (Option<i64>, Option<i64>) = sqlx::query_as(
        "WITH s AS (SELECT id, default_ttl_seconds FROM stores
                    WHERE org_id = $1 AND env_id = $2 AND name = $3),
              upd AS (
                 UPDATE items i SET
                     value_type = $6,
                     value = $7,
                     ttl = now() + make_interval(secs => s.default_ttl_seconds),
                     version = nextval('item_version_seq'),
                     updated_at = now()
                 FROM s
                 WHERE i.store_id = s.id AND i.partition = $4 AND i.key = $5
                   AND i.ttl > now()
                   AND ($8::bigint[] IS NULL OR i.version = ANY($8))
                 RETURNING i.version)
         SELECT (SELECT id FROM s), (SELECT version FROM upd)",
    )
    .bind(s.org_id)
    .bind(s.env_id)
    .bind(s.store_id)
    .bind(partition)
    .bind(key)
    .bind(value.value_type.as_str())
    .bind(&value.bytes)
    .bind(versions)
    .fetch_one(pool)
    .await?;
    Ok(write_outcome(store, version))
}

/// `DELETE` of an item, optionally conditional. Without condition an
/// expired row is deleted too (it was invisible anyway) but answers as
/// absent.
async fn delete_item(
    pool: &PgPool,
    s: StoreRef<'_>,
    partition: &str,
    key: &str,
    precondition: &Precondition,
) -> Result<WriteOutcome, sqlx::Error> {
    let (conditional, versions): (bool, Option<&[i64]>) = match precondition {
        Precondition::None => (false, None),
        Precondition::Exists => (true, None),
        Precondition::Versions(v) => (true, Some(v.as_slice())),
    };
    let (store, live): (Option<i64>, Option<bool>) = sqlx::query_as(
        "WITH s AS (SELECT id FROM stores WHERE org_id = $1 AND env_id = $2 AND name = $3),
              d AS (
                 DELETE FROM items i USING s
                 WHERE i.store_id = s.id AND i.partition = $4 AND i.key = $5
                   AND (NOT $6 OR (i.ttl > now()
                                   AND ($7::bigint[] IS NULL OR i.version = ANY($7))))
                 RETURNING i.ttl > now() AS live)
         SELECT (SELECT id FROM s), (SELECT live FROM d)",
    )
    .bind(s.org_id)
    .bind(s.env_id)
    .bind(s.store_id)
    .bind(partition)
    .bind(key)
    .bind(conditional)
    .bind(versions)
    .fetch_one(pool)
    .await?;
    Ok(match (store, live) {
        (None, _) => WriteOutcome::NoStore,
        (Some(_), Some(true)) => WriteOutcome::Done(0),
        (Some(_), _) => WriteOutcome::Rejected,
    })
}

// ------------------------------------------------------------ operations

/// Deletes up to `batch` expired items. `SKIP LOCKED` lets several
/// traffic managers purge at once without waiting on each other, and the
/// outer `ttl < now()` re-check keeps a row that was revived (overwritten)
/// meanwhile.
async fn purge_expired_batch(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM items
         WHERE id IN (SELECT id FROM items WHERE ttl < now() LIMIT $1 FOR UPDATE SKIP LOCKED)
           AND ttl < now()",
    )
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Succeeds when the database answers and the schema (both tables with the
/// columns this code uses, and the version sequence) is in place.
async fn check_ready(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT (SELECT count(*) FROM (SELECT id, name, org_id, env_id, default_ttl_seconds,
                                              is_fixed_ttl, persistent, encrypted
                                       FROM stores LIMIT 0) s),
                (SELECT count(*) FROM (SELECT id, key, partition, store_id, value_type, value,
                                              version, ttl
                                       FROM items LIMIT 0) i),
                'item_version_seq'::regclass",
    )
    .execute(pool)
    .await?;
    Ok(())
}

#[async_trait]
impl ObjectStore for PgBackend {
    async fn put_store(&self, org_id: &str, env_id: &str, store: &Store) -> Result<(), StoreError> {
        put_store(&self.pool, org_id, env_id, store)
            .await
            .map_err(db)
    }

    async fn get_store(&self, s: StoreRef<'_>) -> Result<Option<Store>, StoreError> {
        get_store(&self.pool, s).await.map_err(db)
    }

    async fn list_stores(
        &self,
        org_id: &str,
        env_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Store>, StoreError> {
        list_stores(&self.pool, org_id, env_id, after, limit)
            .await
            .map_err(db)
    }

    async fn delete_store(&self, s: StoreRef<'_>) -> Result<bool, StoreError> {
        delete_store(&self.pool, s).await.map_err(db)
    }

    async fn list_partitions(
        &self,
        s: StoreRef<'_>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Found<Vec<String>>, StoreError> {
        let Some(pk) = store_pk(&self.pool, s).await.map_err(db)? else {
            return Ok(Found::NoStore);
        };
        list_partitions(&self.pool, pk, after, limit)
            .await
            .map(Found::Present)
            .map_err(db)
    }

    async fn delete_partition(
        &self,
        s: StoreRef<'_>,
        partition: &str,
    ) -> Result<Found<i64>, StoreError> {
        delete_partition(&self.pool, s, partition).await.map_err(db)
    }

    async fn list_keys(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Found<Vec<String>>, StoreError> {
        let Some(pk) = store_pk(&self.pool, s).await.map_err(db)? else {
            return Ok(Found::NoStore);
        };
        list_keys(&self.pool, pk, partition, after, limit)
            .await
            .map(Found::Present)
            .map_err(db)
    }

    async fn get_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
    ) -> Result<Found<StoredItem>, StoreError> {
        Ok(
            match get_item(&self.pool, s, partition, key).await.map_err(db)? {
                Found::NoStore => Found::NoStore,
                Found::Absent => Found::Absent,
                Found::Present((value_type, value, version)) => Found::Present(StoredItem {
                    value_type: ValueType::parse(&value_type).ok_or_else(|| {
                        StoreError::broken(BACKEND, format!("stored value type {value_type:?}"))
                    })?,
                    value,
                    version,
                }),
            },
        )
    }

    async fn upsert_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        value: &ItemValue,
    ) -> Result<Option<i64>, StoreError> {
        upsert_item(&self.pool, s, partition, key, value)
            .await
            .map_err(db)
    }

    async fn insert_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        value: &ItemValue,
    ) -> Result<WriteOutcome, StoreError> {
        insert_item(&self.pool, s, partition, key, value)
            .await
            .map_err(db)
    }

    async fn update_item_if(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        value: &ItemValue,
        versions: Option<&[i64]>,
    ) -> Result<WriteOutcome, StoreError> {
        update_item_if(&self.pool, s, partition, key, value, versions)
            .await
            .map_err(db)
    }

    async fn delete_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        precondition: &Precondition,
    ) -> Result<WriteOutcome, StoreError> {
        delete_item(&self.pool, s, partition, key, precondition)
            .await
            .map_err(db)
    }

    async fn purge_expired_batch(&self, batch: i64) -> Result<u64, StoreError> {
        purge_expired_batch(&self.pool, batch).await.map_err(db)
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        check_ready(&self.pool).await.map_err(db)
    }
}
