//! Bearer tokens scoped to gateway labels.

use std::collections::HashSet;
use std::sync::Arc;

use artisync_domain::{GatewayLabel, NodeId};
use artisync_http::constant_time_eq;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::object_store::{ClientIdentity, StoreScope};
use artisync_http::ApiError;

#[derive(Debug, Clone)]
pub enum LabelScope {
    All,
    Only(HashSet<GatewayLabel>),
}

#[derive(Debug, Clone)]
pub struct TokenScope {
    pub name: String,
    pub secret: String,
    pub labels: LabelScope,
    /// The node this token may report status for; `None`: any node.
    pub node: Option<NodeId>,
    /// Where in the persistence store it may read and write.
    pub stores: StoreScope,
}

impl TokenScope {
    pub fn allows(&self, label: &GatewayLabel) -> bool {
        match &self.labels {
            LabelScope::All => true,
            LabelScope::Only(set) => set.contains(label),
        }
    }

    /// 403 naming the first label outside this token's scope.
    pub fn check(&self, labels: &[GatewayLabel]) -> Result<(), ApiError> {
        match labels.iter().find(|l| !self.allows(l)) {
            Some(l) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token {:?} is not allowed to read label {:?}",
                    self.name,
                    l.as_str()
                ),
            )),
            None => Ok(()),
        }
    }

    /// 403 when this token is bound to another node than `node`.
    pub fn check_node(&self, node: &NodeId) -> Result<(), ApiError> {
        match &self.node {
            Some(own) if own != node => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token {:?} may only report the status of node {:?}",
                    self.name,
                    own.as_str()
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug)]
pub struct TokenRegistry {
    scopes: Vec<Arc<TokenScope>>,
}

impl TokenRegistry {
    pub fn new(scopes: Vec<TokenScope>) -> Self {
        TokenRegistry {
            scopes: scopes.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn find(&self, presented: &str) -> Option<Arc<TokenScope>> {
        self.scopes
            .iter()
            .find(|s| constant_time_eq(s.secret.as_bytes(), presented.as_bytes()))
            .cloned()
    }
}

/// Authenticates the request; the token's scope and the client identity
/// (for the persistence store's rate limit) become request extensions.
pub async fn authenticate(
    State(tokens): State<Arc<TokenRegistry>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = match artisync_http::presented_token(request.headers()) {
        Ok(token) => token,
        Err(e) => return e.into_response(),
    };
    let Some(scope) = tokens.find(presented) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token").into_response();
    };
    request.extensions_mut().insert(ClientIdentity {
        name: scope.name.clone(),
        stores: scope.stores.clone(),
    });
    request.extensions_mut().insert(scope);
    next.run(request).await
}
