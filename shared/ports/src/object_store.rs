//! The persistence store (DESIGN.md §8): stores of items in partitions,
//! with TTLs, versions for compare-and-set, and keyset paging.
//!
//! Every write is atomic on its own: the backend arbitrates concurrent
//! writers (a unique key, a conditional update), never a read followed by
//! a write in the caller. An item is visible while its TTL has not passed;
//! a row past it is absent everywhere (and may be overwritten by an
//! insert) until [`ObjectStore::purge_expired_batch`] deletes it.

use async_trait::async_trait;
use serde::Serialize;

use crate::StoreError;

/// Rolling TTL: a read extends the TTL only once more than this fraction of
/// it has elapsed since the last extension, so a hot key costs at most ~10
/// writes per TTL period, not one per read.
pub const ROLLING_REFRESH_FRACTION: f64 = 0.1;

/// An item's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    String,
    Number,
    Binary,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::String => "STRING",
            ValueType::Number => "NUMBER",
            ValueType::Binary => "BINARY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "STRING" => Some(ValueType::String),
            "NUMBER" => Some(ValueType::Number),
            "BINARY" => Some(ValueType::Binary),
            _ => None,
        }
    }
}

/// A validated value as stored: UTF-8 text, the JSON number literal
/// exactly as the client sent it, or the decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemValue {
    pub value_type: ValueType,
    pub bytes: Vec<u8>,
}

/// A store's settings, as stored and as answered.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Store {
    pub store_id: String,
    pub default_ttl_seconds: i32,
    pub is_fixed_ttl: bool,
    pub persistent: bool,
    pub encrypted: bool,
}

/// Which store a request addresses.
#[derive(Debug, Clone, Copy)]
pub struct StoreRef<'a> {
    pub org_id: &'a str,
    pub env_id: &'a str,
    pub store_id: &'a str,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<T> {
    NoStore,
    Absent,
    Present(T),
}

/// The `If-Match` condition of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match`: unconditional.
    None,
    /// `If-Match: *`: the item must exist.
    Exists,
    /// `If-Match: "v1", "v2"`: the item's version must be one of these.
    /// Empty when no listed tag was a version, which then never matches.
    Versions(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    pub value_type: ValueType,
    pub value: Vec<u8>,
    pub version: i64,
}

/// Outcome of a conditional write or delete.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    NoStore,
    /// POST: the key exists. PUT/DELETE with `If-Match`: the condition
    /// failed. DELETE without condition: the key does not exist.
    Rejected,
    /// Done; the item's new version (0 for deletes).
    Done(i64),
}

/// Listings fetch one more than the page size, so the caller knows whether
/// another page exists.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Creates or updates a store's settings.
    async fn put_store(&self, org_id: &str, env_id: &str, store: &Store) -> Result<(), StoreError>;
    async fn get_store(&self, s: StoreRef<'_>) -> Result<Option<Store>, StoreError>;
    /// Stores by name after `after`, at most `limit + 1`.
    async fn list_stores(
        &self,
        org_id: &str,
        env_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Store>, StoreError>;
    /// Deletes a store with all its items; answers whether it existed.
    async fn delete_store(&self, s: StoreRef<'_>) -> Result<bool, StoreError>;
    /// Partitions holding a live item, after `after`, at most `limit + 1`.
    async fn list_partitions(
        &self,
        s: StoreRef<'_>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Found<Vec<String>>, StoreError>;
    /// Deletes every item of a partition at once; answers how many were live.
    async fn delete_partition(
        &self,
        s: StoreRef<'_>,
        partition: &str,
    ) -> Result<Found<i64>, StoreError>;
    /// Live keys of a partition after `after`, in byte order, at most `limit + 1`.
    async fn list_keys(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Found<Vec<String>>, StoreError>;
    /// A live item; with a rolling TTL, extends it when more than
    /// [`ROLLING_REFRESH_FRACTION`] of the TTL has elapsed.
    async fn get_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
    ) -> Result<Found<StoredItem>, StoreError>;
    /// Inserts or overwrites; `None` when the store does not exist. Every
    /// write restarts the TTL.
    async fn upsert_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        value: &ItemValue,
    ) -> Result<Option<i64>, StoreError>;
    /// Inserts only: `Rejected` when a live item has the key.
    async fn insert_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        value: &ItemValue,
    ) -> Result<WriteOutcome, StoreError>;
    /// Compare-and-set on the version (`versions: None`: the item must
    /// exist); of two racing writers with the same version one wins.
    async fn update_item_if(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        value: &ItemValue,
        versions: Option<&[i64]>,
    ) -> Result<WriteOutcome, StoreError>;
    /// Deletes an item, optionally on a condition.
    async fn delete_item(
        &self,
        s: StoreRef<'_>,
        partition: &str,
        key: &str,
        precondition: &Precondition,
    ) -> Result<WriteOutcome, StoreError>;
    /// Deletes up to `batch` expired items; answers how many. Several
    /// traffic managers may run it at once against one database.
    async fn purge_expired_batch(&self, batch: i64) -> Result<u64, StoreError>;
    /// Succeeds when the backend answers and the schema is in place.
    async fn check_ready(&self) -> Result<(), StoreError>;
}
