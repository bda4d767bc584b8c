//! Direct publishing (`publish_directly_to_gateway`): the publisher pushes
//! each label's desired state to the admin API of every gateway of the
//! label, instead of the gateways pulling it from the traffic manager.

use artisync_domain::runtime::GatewayStatusReport;
use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    #[error("gateway unreachable at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("gateway answered {status} for {url}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("invalid answer from {url}: {message}")]
    Invalid { url: String, message: String },
}

impl PushError {
    /// Whether trying again later may succeed. A 4xx other than 408/429
    /// means the request itself is wrong (bad token, a node that does not
    /// take pushes).
    pub fn is_retryable(&self) -> bool {
        match self {
            PushError::Unreachable { .. } | PushError::Invalid { .. } => true,
            PushError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        }
    }
}

/// An API as a gateway runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningApi {
    pub api_id: ApiId,
    /// The applied revision; `None` when the node only knows of a failure.
    pub revision: Option<Revision>,
    pub sha256: Option<Sha256Digest>,
}

/// What a gateway did with a pushed artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// It runs the revision now (deployed, or already running it).
    Applied,
    /// It refused the artifact and keeps what it runs (invalid artifact,
    /// digest mismatch, older than what it runs); retrying is pointless.
    Refused(String),
}

/// One gateway's admin API.
#[async_trait]
pub trait GatewayAdmin: Send + Sync + 'static {
    /// Where it is, for logs and errors.
    fn url(&self) -> &str;
    /// What the gateway runs.
    async fn running(&self) -> Result<Vec<RunningApi>, PushError>;
    async fn deploy(
        &self,
        api: ApiId,
        revision: Revision,
        sha256: Sha256Digest,
        xml: Bytes,
    ) -> Result<Pushed, PushError>;
    /// Removes the API; succeeds when the gateway did not run it.
    async fn undeploy(&self, api: ApiId) -> Result<(), PushError>;
    /// The gateway's whole status report, for the fleet view.
    async fn status(&self) -> Result<GatewayStatusReport, PushError>;
}

/// A gateway and the labels (WSO2 environments) it belongs to.
#[derive(Clone)]
pub struct PushTarget {
    pub labels: Vec<GatewayLabel>,
    pub gateway: Arc<dyn GatewayAdmin>,
}
