//! Deployed APIs and the immutable routing table the data plane reads.
//!
//! A deploy builds a new table from the current one and swaps it in
//! atomically (`ArcSwap`); requests load the table once and route on that
//! snapshot, so a request in flight finishes on the revision it started with
//! and there is never a moment without the API.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arc_swap::ArcSwap;
use artisync_domain::{ApiId, Revision, Sha256Digest};
use artisync_synapse::{Artifact, Condition, Expression, FaultSequence, FilterCondition, Mediator};
use regex::Regex;

use super::matcher::methods_mask;
use super::traffic::ApiTraffic;

/// The routing table shared between the deployer (which swaps it) and the
/// data plane (which loads it once per request).
pub type SharedRoutingTable = Arc<ArcSwap<RoutingTable>>;

/// A deployed API revision with everything the hot path needs precomputed.
#[derive(Debug)]
pub struct CompiledApi {
    pub api_id: ApiId,
    pub revision: Revision,
    pub sha256: Sha256Digest,
    pub artifact: Arc<Artifact>,
    /// Method bits of each resource, in document order.
    pub(crate) method_masks: Vec<u8>,
    /// Filter regexes anchored at both ends, by their source pattern: a
    /// Synapse filter regex must match the whole value, which an unanchored
    /// `Regex::is_match` does not check.
    full_match: HashMap<String, Regex>,
    /// Request counters and latency of this API, shared with its other
    /// revisions: recording is a few relaxed atomic adds.
    pub traffic: Arc<ApiTraffic>,
}

impl CompiledApi {
    /// Precomputes matchers for a validated artifact. Infallible: anything
    /// that could fail was refused by the validator. `traffic` are the
    /// API's cells in its node's [`super::TrafficRegistry`].
    pub fn new(
        api_id: ApiId,
        revision: Revision,
        sha256: Sha256Digest,
        artifact: Artifact,
        traffic: Arc<ApiTraffic>,
    ) -> CompiledApi {
        let method_masks = artifact
            .api
            .resources
            .iter()
            .map(|r| methods_mask(&r.methods))
            .collect();
        let mut full_match = HashMap::new();
        let mut visit = |m: &[Mediator]| collect_regexes(m, &mut full_match);
        for resource in &artifact.api.resources {
            for sequence in [&resource.in_sequence, &resource.out_sequence]
                .into_iter()
                .flatten()
            {
                visit(&sequence.mediators);
            }
            if let Some(FaultSequence::Inline(sequence)) = &resource.fault_sequence {
                visit(&sequence.mediators);
            }
        }
        for sequence in artifact.sequences.values() {
            visit(&sequence.mediators);
        }
        CompiledApi {
            api_id,
            revision,
            sha256,
            artifact: Arc::new(artifact),
            method_masks,
            full_match,
            traffic,
        }
    }

    /// The API's context (its path prefix on the gateway).
    pub fn context(&self) -> &str {
        &self.artifact.api.context
    }

    pub fn name(&self) -> &str {
        &self.artifact.api.name
    }

    /// Does `value` match a filter regex as a whole?
    pub(crate) fn regex_matches_whole(&self, regex: &Regex, value: &str) -> bool {
        match self.full_match.get(regex.as_str()) {
            Some(anchored) => anchored.is_match(value),
            // Only reachable if anchoring failed to compile (size limits):
            // accept a leftmost match that spans the whole value.
            None => regex
                .find(value)
                .is_some_and(|m| m.start() == 0 && m.end() == value.len()),
        }
    }
}

fn collect_regexes(mediators: &[Mediator], out: &mut HashMap<String, Regex>) {
    for mediator in mediators {
        if let Mediator::Filter(filter) = mediator {
            if let FilterCondition::Regex { regex, .. } = &filter.condition {
                let pattern = regex.as_str();
                if !out.contains_key(pattern)
                    && let Ok(anchored) = Regex::new(&format!("^(?:{pattern})$"))
                {
                    out.insert(pattern.to_owned(), anchored);
                }
            }
            collect_regexes(&filter.then, out);
            collect_regexes(&filter.otherwise, out);
        }
    }
}

/// Does a condition read the JSON body?
pub(crate) fn condition_reads_body(condition: &Condition) -> bool {
    match condition {
        Condition::Exists(e) | Condition::Equals(e, _) | Condition::NotEquals(e, _) => {
            matches!(e, Expression::JsonPath(_))
        }
        Condition::And(a, b) | Condition::Or(a, b) => {
            condition_reads_body(a) || condition_reads_body(b)
        }
        Condition::Not(c) => condition_reads_body(c),
    }
}

/// An API in the by-context index: hashed and compared by its context, so
/// that a `&str` slice of the request path can be looked up without copying.
#[derive(Debug, Clone)]
struct ByContext(Arc<CompiledApi>);

impl PartialEq for ByContext {
    fn eq(&self, other: &Self) -> bool {
        self.0.context() == other.0.context()
    }
}

impl Eq for ByContext {}

impl Hash for ByContext {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly like the `str` it borrows as.
        self.0.context().hash(state);
    }
}

impl Borrow<str> for ByContext {
    fn borrow(&self) -> &str {
        self.0.context()
    }
}

/// The deployed APIs, indexed by id and by context. Immutable: changes make
/// a new table (cloning the two indexes is a copy of `Arc`s, cheap even for
/// 10,000 APIs).
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    by_id: HashMap<ApiId, Arc<CompiledApi>>,
    by_context: HashSet<ByContext>,
    /// The longest context, in bytes: longer prefixes of a path need no
    /// lookup.
    max_context_len: usize,
}

impl RoutingTable {
    pub fn empty() -> Self {
        RoutingTable::default()
    }

    /// Builds a table from many APIs at once (start-up). Later entries win
    /// over earlier ones with the same id or context.
    pub fn from_apis(apis: impl IntoIterator<Item = Arc<CompiledApi>>) -> Self {
        let apis = apis.into_iter();
        let (lower, _) = apis.size_hint();
        let mut table = RoutingTable {
            by_id: HashMap::with_capacity(lower),
            by_context: HashSet::with_capacity(lower),
            max_context_len: 0,
        };
        for api in apis {
            table.insert(api);
        }
        table
    }

    /// A new table with `api` added, or replacing the API with the same id.
    /// Another API at the same context is replaced too (with a warning):
    /// two APIs cannot share a path prefix.
    pub fn with_api(&self, api: Arc<CompiledApi>) -> Self {
        let mut table = self.clone();
        table.insert(api);
        table
    }

    /// A new table without the API (unchanged if it is not deployed).
    pub fn without_api(&self, api_id: &ApiId) -> Self {
        let mut table = self.clone();
        table.remove(api_id);
        table
    }

    pub fn get(&self, api_id: &ApiId) -> Option<&Arc<CompiledApi>> {
        self.by_id.get(api_id)
    }

    /// The API deployed at exactly `context`, if any.
    pub fn at_context(&self, context: &str) -> Option<&Arc<CompiledApi>> {
        self.by_context.get(context).map(|entry| &entry.0)
    }

    pub fn apis(&self) -> impl Iterator<Item = &Arc<CompiledApi>> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The API whose context is the longest prefix of `path` at a segment
    /// boundary, and where the rest of the path starts. Tries each prefix
    /// from the longest down, one hash lookup each, without allocating.
    pub fn route(&self, path: &str) -> Option<(&Arc<CompiledApi>, usize)> {
        if self.by_context.is_empty() {
            return None;
        }
        let mut end = path.len();
        while end > 0 {
            let candidate = &path[..end];
            if end <= self.max_context_len
                && let Some(entry) = self.by_context.get(candidate)
            {
                return Some((&entry.0, end));
            }
            // The next shorter prefix ends before the previous `/`; the
            // remainder then starts with `/`, so the match is at a segment
            // boundary.
            match candidate.rfind('/') {
                Some(slash) if slash > 0 => end = slash,
                _ => break,
            }
        }
        // The root context `/` matches every path, with the whole path as
        // its remainder.
        self.by_context.get("/").map(|entry| (&entry.0, 0))
    }

    fn insert(&mut self, api: Arc<CompiledApi>) {
        if let Some(previous) = self.by_id.remove(&api.api_id) {
            self.unindex_context(&previous);
        }
        if let Some(clash) = self.by_context.take(api.context()) {
            tracing::warn!(
                context = api.context(),
                replaced_api_id = %clash.0.api_id,
                replaced_api = clash.0.name(),
                api_id = %api.api_id,
                api = api.name(),
                "another API was deployed at the same context; it no longer receives traffic"
            );
            self.by_id.remove(&clash.0.api_id);
        }
        self.max_context_len = self.max_context_len.max(api.context().len());
        self.by_id.insert(api.api_id, Arc::clone(&api));
        self.by_context.insert(ByContext(api));
    }

    fn remove(&mut self, api_id: &ApiId) {
        let Some(previous) = self.by_id.remove(api_id) else {
            return;
        };
        self.unindex_context(&previous);
        if previous.context().len() >= self.max_context_len {
            self.max_context_len = self
                .by_context
                .iter()
                .map(|e| e.0.context().len())
                .max()
                .unwrap_or(0);
        }
    }

    /// Drops `api`'s context entry, unless the context already belongs to
    /// another API.
    fn unindex_context(&mut self, api: &CompiledApi) {
        if self
            .by_context
            .get(api.context())
            .is_some_and(|e| e.0.api_id == api.api_id)
        {
            self.by_context.remove(api.context());
        }
    }
}
