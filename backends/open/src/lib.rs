#![forbid(unsafe_code)]
//! The backends, opened from the URLs of a component's config. The
//! binaries' composition roots call this crate and hand what it opens to
//! the core; the core never names a backend.

use std::sync::Arc;
use std::time::Duration;

use artisync_config::storage::{DatabaseSource, StorageOptions, StorageUrl};
use artisync_domain::GatewayLabel;
use artisync_domain::topology::Topology;
pub use artisync_http_source::ClientTls;
use artisync_ports::push::PushTarget;
use artisync_ports::{
    ArtifactSource, ArtifactStore, DesiredState, EventPublisher, EventSubscriber, GatewayBackends,
    Health, ObjectStore, Outbox, PublisherBackends, TrafficManagerBackends,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Postgres(#[from] artisync_postgres::OpenError),
    #[error(transparent)]
    Credentials(#[from] artisync_postgres::CredentialsError),
    #[error(transparent)]
    Sqlite(#[from] artisync_sqlite::OpenError),
    #[error(transparent)]
    MySql(#[from] artisync_mysql::OpenError),
    #[error(transparent)]
    Source(#[from] artisync_ports::source::SourceError),
    #[error(transparent)]
    Push(#[from] artisync_ports::push::PushError),
    #[error("{0}")]
    Unsupported(String),
}

/// Every storage port of one database, and what keeps it open.
#[derive(Clone)]
pub struct Storage {
    pub artifacts: Arc<dyn ArtifactStore>,
    pub outbox: Arc<dyn Outbox>,
    pub desired: Arc<dyn DesiredState>,
    /// `None` where the backend does not hold the persistence store.
    pub object_store: Option<Arc<dyn ObjectStore>>,
    pub health: Arc<dyn Health>,
    kind: Kind,
    /// Another storage this one took its persistence store from
    /// ([`Storage::with_object_store_of`]), closed with it.
    companion: Option<Box<Storage>>,
}

#[derive(Clone)]
enum Kind {
    Postgres(artisync_postgres::PgBackend),
    Sqlite(artisync_sqlite::SqliteBackend),
    MySql(artisync_mysql::MySqlBackend),
}

impl Storage {
    /// Opens (creating or migrating the schema) the storage `url` names.
    pub async fn open(url: &StorageUrl, options: &StorageOptions) -> Result<Storage, OpenError> {
        match url {
            StorageUrl::Postgres(raw) => {
                let connect = artisync_postgres::parse_url(raw, "the database URL")?;
                Self::postgres(connect, options).await
            }
            StorageUrl::Sqlite(path) => {
                let sqlite = artisync_sqlite::SqliteBackend::open(path)
                    .await?
                    .with_inline_artifact_limit(options.inline_artifact_max_bytes);
                Ok(Self::sqlite(sqlite))
            }
            StorageUrl::MySql(raw) => {
                let connect = artisync_mysql::parse_url(raw, "the database URL")?;
                let pool = artisync_mysql::PoolSettings {
                    max_connections: options.max_connections,
                    acquire_timeout: options.acquire_timeout,
                    max_lifetime: options.max_lifetime,
                };
                let mysql = artisync_mysql::MySqlBackend::connect(connect, &pool)
                    .await?
                    .with_inline_artifact_limit(options.inline_artifact_max_bytes);
                Ok(Self::mysql(mysql))
            }
        }
    }

    /// MySQL holds everything but the persistence store (DESIGN.md §10):
    /// the traffic manager takes it from PostgreSQL or SQLite
    /// ([`Storage::with_object_store_of`]).
    fn mysql(mysql: artisync_mysql::MySqlBackend) -> Storage {
        let shared = Arc::new(mysql.clone());
        Storage {
            artifacts: shared.clone(),
            outbox: shared.clone(),
            desired: shared.clone(),
            object_store: None,
            health: shared,
            kind: Kind::MySql(mysql),
            companion: None,
        }
    }

    /// Whether this storage can hold the persistence store itself.
    pub fn holds_object_store(&self) -> bool {
        self.object_store.is_some()
    }

    /// This storage, with the persistence store of `other` (PostgreSQL or
    /// SQLite), which is closed with it. Readiness checks both.
    pub fn with_object_store_of(mut self, other: Storage) -> Result<Storage, OpenError> {
        let object_store = other.object_store.clone().ok_or_else(|| {
            OpenError::Unsupported(
                "the persistence store needs PostgreSQL or SQLite (object_store.database_url)"
                    .to_owned(),
            )
        })?;
        self.object_store = Some(object_store);
        self.health = Arc::new(BothHealthy(self.health.clone(), other.health.clone()));
        self.companion = Some(Box::new(other));
        Ok(self)
    }

    fn sqlite(sqlite: artisync_sqlite::SqliteBackend) -> Storage {
        let shared = Arc::new(sqlite.clone());
        Storage {
            artifacts: shared.clone(),
            outbox: shared.clone(),
            desired: shared.clone(),
            object_store: Some(shared.clone()),
            health: shared,
            kind: Kind::Sqlite(sqlite),
            companion: None,
        }
    }

    /// Opens what `source` names. A credentials file (PostgreSQL) is
    /// followed until `shutdown`: rotated credentials apply to new
    /// connections without a restart.
    pub async fn open_source(
        source: &DatabaseSource,
        options: &StorageOptions,
        shutdown: CancellationToken,
    ) -> Result<(Storage, Option<JoinHandle<()>>), OpenError> {
        match source {
            DatabaseSource::Url(url) => Ok((Self::open(url, options).await?, None)),
            DatabaseSource::CredentialsFile(path) => {
                let connect = artisync_postgres::read_credentials_file(path)?;
                let pg = Self::connect_postgres(connect, options).await?;
                let watch = artisync_postgres::watch_credentials_file(
                    pg.pool().clone(),
                    path.clone(),
                    shutdown,
                );
                Ok((Self::postgres_storage(pg), Some(watch)))
            }
        }
    }

    /// The traffic manager's storage: what `source` names, with the
    /// persistence store of `object_store` when given (it is required when
    /// `source` is MySQL, which does not hold one).
    pub async fn open_for_traffic_manager(
        source: &DatabaseSource,
        object_store: Option<&StorageUrl>,
        options: &StorageOptions,
        shutdown: CancellationToken,
    ) -> Result<(Storage, Option<JoinHandle<()>>), OpenError> {
        let (storage, watch) = Self::open_source(source, options, shutdown).await?;
        let Some(url) = object_store else {
            return Ok((storage, watch));
        };
        let other = match Self::open(url, options).await {
            Ok(other) => other,
            Err(e) => {
                storage.close().await;
                return Err(e);
            }
        };
        tracing::info!(storage = url.kind(), object_store = ?url, "the persistence store has its own database");
        Ok((storage.with_object_store_of(other)?, watch))
    }

    async fn postgres(
        connect: artisync_postgres::PgConnectOptions,
        options: &StorageOptions,
    ) -> Result<Storage, OpenError> {
        Ok(Self::postgres_storage(
            Self::connect_postgres(connect, options).await?,
        ))
    }

    async fn connect_postgres(
        connect: artisync_postgres::PgConnectOptions,
        options: &StorageOptions,
    ) -> Result<artisync_postgres::PgBackend, OpenError> {
        let pool = artisync_postgres::PoolSettings {
            max_connections: options.max_connections,
            acquire_timeout: options.acquire_timeout,
            max_lifetime: options.max_lifetime,
        };
        Ok(artisync_postgres::PgBackend::connect(connect, &pool)
            .await?
            .with_inline_artifact_limit(options.inline_artifact_max_bytes))
    }

    fn postgres_storage(pg: artisync_postgres::PgBackend) -> Storage {
        let shared = Arc::new(pg.clone());
        Storage {
            artifacts: shared.clone(),
            outbox: shared.clone(),
            desired: shared.clone(),
            object_store: Some(shared.clone()),
            health: shared,
            kind: Kind::Postgres(pg),
            companion: None,
        }
    }

    /// The publisher's backends: this storage, and RabbitMQ at `amqp_url`.
    pub fn for_publisher(&self, amqp_url: &str, topology: &Topology) -> PublisherBackends {
        PublisherBackends {
            store: self.artifacts.clone(),
            outbox: self.outbox.clone(),
            health: self.health.clone(),
            bus: event_publisher(amqp_url, topology),
            desired: self.desired.clone(),
            push_targets: Vec::new(),
        }
    }

    /// The traffic manager's backends: this storage, with its persistence
    /// store.
    pub fn for_traffic_manager(&self) -> Result<TrafficManagerBackends, OpenError> {
        let object_store = self.object_store.clone().ok_or_else(|| {
            OpenError::Unsupported(
                "this database cannot hold the persistence store; use PostgreSQL or SQLite"
                    .to_owned(),
            )
        })?;
        Ok(TrafficManagerBackends {
            desired: self.desired.clone(),
            object_store,
            health: self.health.clone(),
        })
    }

    /// Closes the connections; call after the component stopped.
    pub async fn close(&self) {
        match &self.kind {
            Kind::Postgres(pg) => pg.close().await,
            Kind::Sqlite(sqlite) => sqlite.close().await,
            Kind::MySql(mysql) => mysql.close().await,
        }
        if let Some(companion) = &self.companion {
            Box::pin(companion.close()).await;
        }
    }

    /// A task that waits for `task` (a component's), then closes this
    /// storage and joins `also`.
    pub fn close_after(self, task: JoinHandle<()>, also: Option<JoinHandle<()>>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let _ = task.await;
            if let Some(also) = also {
                let _ = also.await;
            }
            self.close().await;
        })
    }
}

/// Creates the database `url` names if the server does not have it yet
/// (SQLite creates its file on open); answers its name when it was created.
pub async fn ensure_database(url: &StorageUrl) -> Result<Option<String>, OpenError> {
    match url {
        StorageUrl::Postgres(raw) => Ok(artisync_postgres::ensure_database(raw).await?),
        StorageUrl::MySql(raw) => Ok(artisync_mysql::ensure_database(raw).await?),
        StorageUrl::Sqlite(_) => Ok(None),
    }
}

/// Ready when both storages are.
struct BothHealthy(Arc<dyn Health>, Arc<dyn Health>);

#[async_trait::async_trait]
impl Health for BothHealthy {
    async fn check(&self) -> Result<(), artisync_ports::StoreError> {
        self.0.check().await?;
        self.1.check().await
    }
}

/// The relay's bus: RabbitMQ at `amqp_url`.
pub fn event_publisher(amqp_url: &str, topology: &Topology) -> Box<dyn EventPublisher> {
    Box::new(artisync_rabbitmq::RabbitPublisher::new(
        amqp_url.to_owned(),
        topology.clone(),
    ))
}

/// A gateway node's event source: RabbitMQ at `amqp_url`.
pub fn event_subscriber(amqp_url: &str, topology: &Topology) -> Arc<dyn EventSubscriber> {
    Arc::new(artisync_rabbitmq::RabbitSubscriber::new(
        amqp_url.to_owned(),
        topology.clone(),
    ))
}

/// A gateway node in its own process: the traffic manager at `url` (with
/// the node's token) as the artifact source, RabbitMQ at `amqp_url`.
pub fn gateway(
    traffic_manager_url: &str,
    token: &str,
    timeout: Duration,
    amqp_url: &str,
    topology: &Topology,
) -> Result<GatewayBackends, OpenError> {
    gateway_with_tls(
        traffic_manager_url,
        token,
        timeout,
        &ClientTls::default(),
        amqp_url,
        topology,
    )
}

/// [`gateway`], trusting the traffic manager and presenting a client
/// certificate as `tls` says.
pub fn gateway_with_tls(
    traffic_manager_url: &str,
    token: &str,
    timeout: Duration,
    tls: &ClientTls,
    amqp_url: &str,
    topology: &Topology,
) -> Result<GatewayBackends, OpenError> {
    let source: Arc<dyn ArtifactSource> =
        Arc::new(artisync_http_source::TrafficManagerClient::with_tls(
            traffic_manager_url,
            token,
            timeout,
            tls,
        )?);
    Ok(GatewayBackends {
        source,
        events: event_subscriber(amqp_url, topology),
    })
}

/// The gateways the publisher pushes to (`publish_directly_to_gateway`):
/// each one's admin API at its service URL, with its admin token, serving
/// its labels.
pub fn push_targets<'a>(
    gateways: impl IntoIterator<Item = (&'a str, &'a str, &'a [GatewayLabel])>,
    timeout: Duration,
) -> Result<Vec<PushTarget>, OpenError> {
    gateways
        .into_iter()
        .map(|(service_url, token, labels)| {
            Ok(PushTarget {
                labels: labels.to_vec(),
                gateway: Arc::new(artisync_http_source::GatewayAdminClient::new(
                    service_url,
                    token,
                    timeout,
                )?),
            })
        })
        .collect()
}
