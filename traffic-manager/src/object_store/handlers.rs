//! HTTP handlers of the persistence store.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::model::{
    self, ItemResponse, KeyEntry, Page, PageParams, PageRequest, validate_key, validate_name,
};
use super::{ClientIdentity, ObjectStoreState};
use artisync_ports::object_store::{Found, Precondition, StoreRef, WriteOutcome};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EnvPath {
    org_id: String,
    env_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StorePath {
    org_id: String,
    env_id: String,
    store_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PartitionPath {
    org_id: String,
    env_id: String,
    store_id: String,
    partition_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ItemPath {
    org_id: String,
    env_id: String,
    store_id: String,
    partition_id: String,
    key_id: String,
}

impl EnvPath {
    fn validate(&self) -> Result<(), ApiError> {
        validate_name("orgId", &self.org_id)?;
        validate_name("envId", &self.env_id)
    }
}

/// Checks the names that locate a store.
fn store_ref<'a>(
    org_id: &'a str,
    env_id: &'a str,
    store_id: &'a str,
) -> Result<StoreRef<'a>, ApiError> {
    validate_name("orgId", org_id)?;
    validate_name("envId", env_id)?;
    validate_name("storeId", store_id)?;
    Ok(StoreRef {
        org_id,
        env_id,
        store_id,
    })
}

impl StorePath {
    fn validate(&self) -> Result<StoreRef<'_>, ApiError> {
        store_ref(&self.org_id, &self.env_id, &self.store_id)
    }
}

impl PartitionPath {
    fn validate(&self) -> Result<StoreRef<'_>, ApiError> {
        validate_name("partitionId", &self.partition_id)?;
        store_ref(&self.org_id, &self.env_id, &self.store_id)
    }
}

impl ItemPath {
    fn validate(&self) -> Result<StoreRef<'_>, ApiError> {
        validate_name("partitionId", &self.partition_id)?;
        validate_key(&self.key_id)?;
        store_ref(&self.org_id, &self.env_id, &self.store_id)
    }
}

// Extractor rejections become the JSON error body like every other error.

fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    extracted.map(|Path(p)| p).map_err(|e| ApiError::Rejected {
        status: e.status(),
        message: e.body_text(),
    })
}

fn query<T: DeserializeOwned>(extracted: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    extracted.map(|Query(q)| q).map_err(|e| ApiError::Rejected {
        status: StatusCode::BAD_REQUEST,
        message: e.body_text(),
    })
}

fn body(extracted: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    extracted.map_err(|e| ApiError::Rejected {
        status: e.status(),
        message: e.body_text(),
    })
}

fn page_request(
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<PageRequest, ApiError> {
    query(params)?.validate()
}

/// Cuts the extra row the repository fetched and makes the token from the
/// last entry of the page.
fn into_page<T>(mut rows: Vec<T>, size: i64, name: impl Fn(&T) -> &str) -> Page<T> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    let next_page_token = if more {
        rows.last().map(|last| model::encode_page_token(name(last)))
    } else {
        None
    };
    Page {
        values: rows,
        next_page_token,
    }
}

fn store_not_found(s: StoreRef<'_>) -> ApiError {
    ApiError::NotFound(format!("store {:?} not found", s.store_id))
}

fn key_not_found(key: &str) -> ApiError {
    ApiError::NotFound(format!("key {key:?} not found"))
}

// ----------------------------------------------------------------- ready

/// `GET /api/v1/status/ready`: 200 once the database answers and the
/// schema is in place, 503 otherwise.
pub(super) async fn ready(State(state): State<ObjectStoreState>) -> Response {
    let check =
        tokio::time::timeout(std::time::Duration::from_secs(5), state.store.check_ready()).await;
    match check {
        Ok(Ok(())) => {
            (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "persistence store not ready");
            not_ready("the database does not answer or its schema is not in place")
        }
        Err(_) => not_ready("the database did not answer within 5 s"),
    }
}

fn not_ready(message: &str) -> Response {
    ApiError::Rejected {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: message.to_owned(),
    }
    .into_response()
}

// ------------------------------------------------------------ middleware

/// Requires the [`ClientIdentity`] the authentication middleware inserts
/// (fails closed when it is missing, e.g. if the router was mounted without
/// authentication) and applies the per-client rate limit.
pub(super) async fn identify_and_limit(
    State(state): State<ObjectStoreState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(ClientIdentity {
        name: client,
        stores,
    }) = request.extensions().get::<ClientIdentity>()
    else {
        return ApiError::Unauthorized("authentication required".to_owned()).into_response();
    };
    // A path without its organization and environment matches no route:
    // the router answers it.
    if let Some((org, env)) = super::tenancy::org_and_env(request.uri().path())
        && let Err(e) = stores.check(client, org, env)
    {
        return e.into_response();
    }
    if let Some(limiter) = &state.limiter
        && let Err(wait) = limiter.check(client)
    {
        // Retry-After is whole seconds; round up so a client that obeys it
        // finds a token.
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        return ApiError::RateLimited {
            retry_after_seconds: seconds,
        }
        .into_response();
    }
    let slot = match tokio::time::timeout(SLOT_WAIT, state.slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        _ => {
            return ApiError::Busy {
                retry_after_seconds: 1,
            }
            .into_response();
        }
    };
    let response = next.run(request).await;
    drop(slot);
    response
}

/// How long a request waits for one of `max_concurrent_requests`.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

// ---------------------------------------------------------------- stores

pub(super) async fn list_stores(
    State(state): State<ObjectStoreState>,
    p: Result<Path<EnvPath>, PathRejection>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    p.validate()?;
    let page = page_request(params)?;
    let rows = state
        .store
        .list_stores(&p.org_id, &p.env_id, page.after.as_deref(), page.size)
        .await?;
    Ok(Json(into_page(rows, page.size, |s| &s.store_id)).into_response())
}

pub(super) async fn get_store(
    State(state): State<ObjectStoreState>,
    p: Result<Path<StorePath>, PathRejection>,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    match state.store.get_store(s).await? {
        Some(store) => Ok(Json(store).into_response()),
        None => Err(store_not_found(s)),
    }
}

/// Creates or updates a store (idempotent); answers 200 with the store
/// either way, as Object Store v2 does.
pub(super) async fn put_store(
    State(state): State<ObjectStoreState>,
    p: Result<Path<StorePath>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    let store = model::parse_store(&body(b)?, s.store_id)?;
    state.store.put_store(s.org_id, s.env_id, &store).await?;
    Ok(Json(store).into_response())
}

pub(super) async fn delete_store(
    State(state): State<ObjectStoreState>,
    p: Result<Path<StorePath>, PathRejection>,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    if state.store.delete_store(s).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(store_not_found(s))
    }
}

// ------------------------------------------------------------ partitions

pub(super) async fn list_partitions(
    State(state): State<ObjectStoreState>,
    p: Result<Path<StorePath>, PathRejection>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    let page = page_request(params)?;
    let rows = match state
        .store
        .list_partitions(s, page.after.as_deref(), page.size)
        .await?
    {
        Found::Present(rows) => rows,
        Found::NoStore | Found::Absent => return Err(store_not_found(s)),
    };
    Ok(Json(into_page(rows, page.size, |p| p.as_str())).into_response())
}

pub(super) async fn delete_partition(
    State(state): State<ObjectStoreState>,
    p: Result<Path<PartitionPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    match state.store.delete_partition(s, &p.partition_id).await? {
        Found::NoStore => Err(store_not_found(s)),
        Found::Absent => Err(ApiError::NotFound(format!(
            "partition {:?} not found",
            p.partition_id
        ))),
        Found::Present(_) => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

pub(super) async fn list_keys(
    State(state): State<ObjectStoreState>,
    p: Result<Path<PartitionPath>, PathRejection>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    let page = page_request(params)?;
    let keys = match state
        .store
        .list_keys(s, &p.partition_id, page.after.as_deref(), page.size)
        .await?
    {
        Found::Present(keys) => keys,
        Found::NoStore | Found::Absent => return Err(store_not_found(s)),
    };
    let entries = keys.into_iter().map(|key_id| KeyEntry { key_id }).collect();
    Ok(Json(into_page(entries, page.size, |e: &KeyEntry| {
        e.key_id.as_str()
    }))
    .into_response())
}

// ----------------------------------------------------------------- items

/// An entity tag list from `If-Match` / `If-None-Match`.
#[derive(Debug, PartialEq, Eq)]
enum TagList {
    Any,
    /// Versions of the tags that are ours (`"<digits>"`, weak or strong);
    /// other tags can never match and are dropped.
    Versions(Vec<i64>),
}

fn tag_list(headers: &HeaderMap, name: &HeaderName) -> Result<Option<TagList>, ApiError> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let mut versions = Vec::new();
    for value in values {
        let value = value
            .to_str()
            .map_err(|_| ApiError::BadRequest(format!("{name} is not ASCII")))?;
        for tag in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tag == "*" {
                return Ok(Some(TagList::Any));
            }
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            if let Some(version) = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(|t| t.parse::<i64>().ok())
            {
                versions.push(version);
            }
        }
    }
    Ok(Some(TagList::Versions(versions)))
}

fn etag(version: i64) -> HeaderValue {
    // Digits and quotes are always a valid header value; the fallback is
    // unreachable but keeps this free of panics.
    HeaderValue::try_from(format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn item_response(
    status: StatusCode,
    version: i64,
    item: ItemResponse,
) -> Result<Response, ApiError> {
    Ok((status, [(header::ETAG, etag(version))], Json(item)).into_response())
}

pub(super) async fn get_item(
    State(state): State<ObjectStoreState>,
    p: Result<Path<ItemPath>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    let if_none_match = tag_list(&headers, &header::IF_NONE_MATCH)?;
    match state.store.get_item(s, &p.partition_id, &p.key_id).await? {
        Found::NoStore => Err(store_not_found(s)),
        Found::Absent => Err(key_not_found(&p.key_id)),
        Found::Present(item) => {
            let unchanged = match &if_none_match {
                Some(TagList::Any) => true,
                Some(TagList::Versions(v)) => v.contains(&item.version),
                None => false,
            };
            if unchanged {
                return Ok((
                    StatusCode::NOT_MODIFIED,
                    [(header::ETAG, etag(item.version))],
                )
                    .into_response());
            }
            let response = ItemResponse::from_value(
                p.key_id.clone(),
                artisync_ports::object_store::ItemValue {
                    value_type: item.value_type,
                    bytes: item.value,
                },
            )?;
            item_response(StatusCode::OK, item.version, response)
        }
    }
}

/// `PUT`: create or overwrite (200); with `If-Match`, compare-and-set
/// (412 when the version differs or the key is absent, as RFC 9110 says);
/// with `If-None-Match: *`, insert only like POST (201, or 412 when the
/// key exists: a failed precondition, where POST answers 409).
pub(super) async fn put_item(
    State(state): State<ObjectStoreState>,
    p: Result<Path<ItemPath>, PathRejection>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    let if_match = tag_list(&headers, &header::IF_MATCH)?;
    let if_none_match = tag_list(&headers, &header::IF_NONE_MATCH)?;
    let value = model::parse_item(&body(b)?, &p.key_id, state.config.max_value_bytes)?;
    let (status, version) = match (if_match, if_none_match) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "If-Match and If-None-Match cannot be combined".to_owned(),
            ));
        }
        (None, Some(TagList::Any)) => {
            match state
                .store
                .insert_item(s, &p.partition_id, &p.key_id, &value)
                .await?
            {
                WriteOutcome::NoStore => return Err(store_not_found(s)),
                WriteOutcome::Rejected => {
                    return Err(ApiError::PreconditionFailed(format!(
                        "key {:?} already exists (If-None-Match: *)",
                        p.key_id
                    )));
                }
                WriteOutcome::Done(v) => (StatusCode::CREATED, v),
            }
        }
        (None, Some(TagList::Versions(_))) => {
            return Err(ApiError::BadRequest(
                "If-None-Match on PUT only supports *".to_owned(),
            ));
        }
        (Some(tags), None) => {
            let versions = match &tags {
                TagList::Any => None,
                TagList::Versions(v) => Some(v.as_slice()),
            };
            match state
                .store
                .update_item_if(s, &p.partition_id, &p.key_id, &value, versions)
                .await?
            {
                WriteOutcome::NoStore => return Err(store_not_found(s)),
                WriteOutcome::Rejected => {
                    return Err(ApiError::PreconditionFailed(format!(
                        "key {:?} does not exist or its version does not match If-Match",
                        p.key_id
                    )));
                }
                WriteOutcome::Done(v) => (StatusCode::OK, v),
            }
        }
        (None, None) => {
            match state
                .store
                .upsert_item(s, &p.partition_id, &p.key_id, &value)
                .await?
            {
                None => return Err(store_not_found(s)),
                Some(v) => (StatusCode::OK, v),
            }
        }
    };
    item_response(status, version, ItemResponse::from_value(p.key_id, value)?)
}

/// `POST`: insert only; 201, or 409 when the key exists (and is not
/// expired).
pub(super) async fn post_item(
    State(state): State<ObjectStoreState>,
    p: Result<Path<ItemPath>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    let value = model::parse_item(&body(b)?, &p.key_id, state.config.max_value_bytes)?;
    match state
        .store
        .insert_item(s, &p.partition_id, &p.key_id, &value)
        .await?
    {
        WriteOutcome::NoStore => Err(store_not_found(s)),
        WriteOutcome::Rejected => Err(ApiError::Conflict(format!(
            "key {:?} already exists",
            p.key_id
        ))),
        WriteOutcome::Done(version) => item_response(
            StatusCode::CREATED,
            version,
            ItemResponse::from_value(p.key_id, value)?,
        ),
    }
}

/// `DELETE`: 204; 404 when absent; with `If-Match`, 412 when the version
/// differs or the key is absent.
pub(super) async fn delete_item(
    State(state): State<ObjectStoreState>,
    p: Result<Path<ItemPath>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = path(p)?;
    let s = p.validate()?;
    let precondition = match tag_list(&headers, &header::IF_MATCH)? {
        None => Precondition::None,
        Some(TagList::Any) => Precondition::Exists,
        Some(TagList::Versions(v)) => Precondition::Versions(v),
    };
    match state
        .store
        .delete_item(s, &p.partition_id, &p.key_id, &precondition)
        .await?
    {
        WriteOutcome::NoStore => Err(store_not_found(s)),
        WriteOutcome::Rejected if precondition == Precondition::None => {
            Err(key_not_found(&p.key_id))
        }
        WriteOutcome::Rejected => Err(ApiError::PreconditionFailed(format!(
            "key {:?} does not exist or its version does not match If-Match",
            p.key_id
        ))),
        WriteOutcome::Done(_) => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tags_are_parsed() {
        let mut headers = HeaderMap::new();
        assert_eq!(tag_list(&headers, &header::IF_MATCH).ok(), Some(None));
        headers.insert(
            header::IF_MATCH,
            HeaderValue::from_static("\"3\", W/\"7\", \"x\""),
        );
        assert_eq!(
            tag_list(&headers, &header::IF_MATCH).ok(),
            Some(Some(TagList::Versions(vec![3, 7])))
        );
        headers.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(
            tag_list(&headers, &header::IF_MATCH).ok(),
            Some(Some(TagList::Any))
        );
        assert_eq!(etag(42), HeaderValue::from_static("\"42\""));
    }
}
