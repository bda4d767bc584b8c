//! What the data API handlers share.

use std::sync::Arc;

use artisync_ports::{DesiredState, Health};

use crate::metrics::TrafficManagerMetrics;
use crate::status_intake::StatusIntake;

pub struct AppState {
    pub desired: Arc<dyn DesiredState>,
    pub status: StatusIntake,
    pub health: Arc<dyn Health>,
    pub metrics: Arc<TrafficManagerMetrics>,
    /// How long a bulk stream's chunk may wait for a slow client.
    pub bulk_send_timeout: std::time::Duration,
}
