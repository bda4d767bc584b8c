//! Readiness of a backend.

use async_trait::async_trait;

use crate::StoreError;

#[async_trait]
pub trait Health: Send + Sync + 'static {
    /// Succeeds when the backend answers and its schema is in place.
    async fn check(&self) -> Result<(), StoreError>;
}
