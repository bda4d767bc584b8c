//! Isolated test environments (own database, own exchange and queues, own
//! work directory) and clusters of the real binaries started in them.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{mysql, postgres};
use anyhow::{Context, bail};
use artisync_cli::client::{GatewayAdminClient, PublisherClient};
use artisync_cli::cluster::{Cluster, ClusterSpec, GatewaySpec, free_port, random_token};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions, QueuePurgeOptions};

/// The broker tests use: `TEST_AMQP_URL`, else `AMQP_URL`, else the local one.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A test's own database, on PostgreSQL or MySQL/MariaDB.
pub struct EnvDatabase {
    pub name: String,
    pub url: String,
    owner: Owner,
}

enum Owner {
    Postgres(postgres::TestDatabase),
    MySql(mysql::TestDatabase),
}

impl EnvDatabase {
    /// A pool on the PostgreSQL database (an error on MySQL).
    pub async fn pool(&self) -> Result<sqlx::PgPool, sqlx::Error> {
        match &self.owner {
            Owner::Postgres(db) => db.pool().await,
            Owner::MySql(_) => Err(sqlx::Error::Configuration(
                "the test database is MySQL; use mysql_pool".into(),
            )),
        }
    }

    /// A pool on the MySQL database (an error on PostgreSQL).
    pub async fn mysql_pool(&self) -> Result<sqlx::MySqlPool, sqlx::Error> {
        match &self.owner {
            Owner::MySql(db) => db.pool().await,
            Owner::Postgres(_) => Err(sqlx::Error::Configuration(
                "the test database is PostgreSQL; use pool".into(),
            )),
        }
    }

    /// The MySQL database itself (to create users in it).
    pub fn mysql(&self) -> Option<&mysql::TestDatabase> {
        match &self.owner {
            Owner::MySql(db) => Some(db),
            Owner::Postgres(_) => None,
        }
    }

    pub fn is_mysql(&self) -> bool {
        matches!(self.owner, Owner::MySql(_))
    }
}

/// One test's world: its own database, exchange, queue prefix and work
/// directory, all removed when it is dropped.
pub struct TestEnv {
    pub db: EnvDatabase,
    pub amqp_url: String,
    pub exchange: String,
    pub queue_prefix: String,
    pub work_dir: PathBuf,
    node_ids: Mutex<Vec<String>>,
}

impl TestEnv {
    /// On PostgreSQL (and RabbitMQ).
    pub async fn new() -> anyhow::Result<TestEnv> {
        let db = postgres::TestDatabase::create_empty()
            .await
            .context("creating the test database (is PostgreSQL running?)")?;
        Self::on(EnvDatabase {
            name: db.name.clone(),
            url: db.url.clone(),
            owner: Owner::Postgres(db),
        })
    }

    /// On MySQL / MariaDB (and RabbitMQ).
    pub async fn mysql() -> anyhow::Result<TestEnv> {
        let db = mysql::TestDatabase::create_empty()
            .await
            .context("creating the test database (is MariaDB running?)")?;
        Self::on(EnvDatabase {
            name: db.name.clone(),
            url: db.url.clone(),
            owner: Owner::MySql(db),
        })
    }

    fn on(db: EnvDatabase) -> anyhow::Result<TestEnv> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let work_dir = std::env::temp_dir().join(format!("artisync-e2e-{id}"));
        std::fs::create_dir_all(&work_dir)?;
        Ok(TestEnv {
            db,
            amqp_url: amqp_url(),
            exchange: format!("artisync.test.{id}.deployments"),
            queue_prefix: format!("artisync.test.{id}.gateway."),
            work_dir,
            node_ids: Mutex::new(Vec::new()),
        })
    }

    /// A gateway with free ports and test-friendly intervals.
    pub fn gateway(&self, id: &str, labels: &[&str]) -> anyhow::Result<GatewaySpec> {
        self.node_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.to_owned());
        let mut gw = GatewaySpec::new(id, labels, free_port()?, free_port()?);
        gw.status_interval_ms = 1_000;
        gw.retry_duration_ms = 200;
        gw.max_retry_count = 3;
        Ok(gw)
    }

    /// A cluster spec on free ports with these gateways.
    pub fn spec(&self, gateways: Vec<GatewaySpec>) -> anyhow::Result<ClusterSpec> {
        Ok(ClusterSpec {
            database_url: self.db.url.clone(),
            amqp_url: self.amqp_url.clone(),
            exchange: self.exchange.clone(),
            queue_prefix: self.queue_prefix.clone(),
            publisher_port: free_port()?,
            traffic_manager_port: free_port()?,
            gateways,
            work_dir: self.work_dir.clone(),
            publisher_token: random_token(),
            admin_token: random_token(),
            log_level: std::env::var("E2E_LOG").unwrap_or_else(|_| "info".into()),
            publisher_amqp_url: None,
            gateway_stale_after_ms: None,
            publisher_max_apply_bytes: None,
            operator_token: random_token(),
            signing: None,
        })
    }

    /// Starts a cluster from a spec made by [`TestEnv::spec`] and adjusted
    /// by the test (fault proxies, publisher settings); only the gateways
    /// named in `running` are started.
    pub async fn start_spec(
        &self,
        spec: ClusterSpec,
        running: &[&str],
    ) -> anyhow::Result<TestCluster> {
        let ids: Vec<String> = running.iter().map(|s| (*s).to_owned()).collect();
        let cluster = Cluster::start_gateways(spec, &ids).await?;
        Ok(TestCluster::new(cluster))
    }

    /// The broker's address (host and port of `amqp_url`).
    pub fn amqp_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        let url = reqwest::Url::parse(&self.amqp_url).context("parsing the AMQP URL")?;
        let host = url.host_str().context("no host in the AMQP URL")?;
        let port = url.port().unwrap_or(5672);
        std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
            .next()
            .context("the AMQP host does not resolve")
    }

    /// `amqp_url` with its host and port replaced by `addr` (a fault proxy).
    pub fn amqp_url_through(&self, addr: std::net::SocketAddr) -> anyhow::Result<String> {
        let mut url = reqwest::Url::parse(&self.amqp_url).context("parsing the AMQP URL")?;
        url.set_ip_host(addr.ip())
            .map_err(|()| anyhow::anyhow!("cannot set the host of {}", self.amqp_url))?;
        url.set_port(Some(addr.port()))
            .map_err(|()| anyhow::anyhow!("cannot set the port of {}", self.amqp_url))?;
        Ok(url.to_string())
    }

    /// How many messages wait in a node's queue.
    pub async fn queue_depth(&self, node: &str) -> anyhow::Result<u32> {
        let (conn, channel) = self.amqp_channel().await?;
        let declared = channel
            .queue_declare(
                self.queue_of(node).as_str().into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .with_context(|| format!("the queue of {node} exists"))?;
        let _ = conn.close(200, "done".into()).await;
        Ok(declared.message_count())
    }

    /// Starts a cluster of the real binaries.
    pub async fn start(&self, gateways: Vec<GatewaySpec>) -> anyhow::Result<TestCluster> {
        let spec = self.spec(gateways)?;
        let cluster = Cluster::start(spec).await?;
        Ok(TestCluster::new(cluster))
    }

    /// Starts a cluster in which only `running` of the `gateways` run; the
    /// others can be spawned later with `cluster.spawn(id)`.
    pub async fn start_some(
        &self,
        gateways: Vec<GatewaySpec>,
        running: &[&str],
    ) -> anyhow::Result<TestCluster> {
        let spec = self.spec(gateways)?;
        let ids: Vec<String> = running.iter().map(|s| (*s).to_owned()).collect();
        let cluster = Cluster::start_gateways(spec, &ids).await?;
        Ok(TestCluster::new(cluster))
    }

    pub fn queue_of(&self, node: &str) -> String {
        format!("{}{node}", self.queue_prefix)
    }

    pub async fn amqp_channel(&self) -> anyhow::Result<(lapin::Connection, lapin::Channel)> {
        let conn =
            lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
                .await
                .context("connecting to RabbitMQ (is it running?)")?;
        let channel = conn.create_channel().await?;
        Ok((conn, channel))
    }

    /// Drops every message waiting in a node's queue (a lost event).
    pub async fn purge_queue(&self, node: &str) -> anyhow::Result<u32> {
        let (conn, channel) = self.amqp_channel().await?;
        let n = channel
            .queue_purge(
                self.queue_of(node).as_str().into(),
                QueuePurgeOptions::default(),
            )
            .await?;
        let _ = conn.close(200, "done".into()).await;
        Ok(n)
    }

    /// Publishes a raw message to a node's queue, as if the broker routed it.
    pub async fn inject(&self, node: &str, payload: &[u8]) -> anyhow::Result<()> {
        let (conn, channel) = self.amqp_channel().await?;
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await?;
        channel
            .basic_publish(
                "".into(),
                self.queue_of(node).as_str().into(),
                lapin::options::BasicPublishOptions::default(),
                payload,
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await?;
        let _ = conn.close(200, "done".into()).await;
        Ok(())
    }

    async fn cleanup_broker(amqp_url: String, exchange: String, queues: Vec<String>) {
        let Ok(conn) =
            lapin::Connection::connect(&amqp_url, lapin::ConnectionProperties::default()).await
        else {
            return;
        };
        if let Ok(channel) = conn.create_channel().await {
            for q in queues {
                let _ = channel
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
        let _ = conn.close(200, "cleanup".into()).await;
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let nodes = self
            .node_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let queues: Vec<String> = nodes
            .iter()
            .flat_map(|n| {
                let q = format!("{}{n}", self.queue_prefix);
                [format!("{q}.dead-letter"), q]
            })
            .collect();
        let (url, exchange) = (self.amqp_url.clone(), self.exchange.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(TestEnv::cleanup_broker(url, exchange, queues));
            }
        })
        .join();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// A started cluster with clients for its APIs.
pub struct TestCluster {
    pub cluster: Cluster,
    pub publisher: PublisherClient,
    http: reqwest::Client,
}

impl TestCluster {
    pub fn new(cluster: Cluster) -> Self {
        let publisher =
            PublisherClient::new(&cluster.spec.publisher_url(), &cluster.spec.publisher_token);
        TestCluster {
            cluster,
            publisher,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    fn gw(&self, id: &str) -> anyhow::Result<&GatewaySpec> {
        self.cluster
            .spec
            .gateways
            .iter()
            .find(|g| g.id == id)
            .with_context(|| format!("no gateway {id}"))
    }

    pub fn gateway_url(&self, id: &str) -> anyhow::Result<String> {
        Ok(format!("http://127.0.0.1:{}", self.gw(id)?.port))
    }

    pub fn admin(&self, id: &str) -> anyhow::Result<GatewayAdminClient> {
        Ok(GatewayAdminClient::new(
            &format!("http://127.0.0.1:{}", self.gw(id)?.admin_port),
            &self.cluster.spec.admin_token,
        ))
    }

    /// GET on a gateway's data plane: (status, body).
    pub async fn call(&self, gateway: &str, path: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.gateway_url(gateway)?);
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| url.clone())?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    }

    /// Creates an API and deploys its first revision to `labels`; returns its id.
    pub async fn publish(&self, xml: &str, labels: &[&str]) -> anyhow::Result<String> {
        let created = self.publisher.create_api(xml).await?;
        if created.status.as_u16() != 201 {
            bail!("create answered {}: {}", created.status, created.text);
        }
        let id = created.body["id"]
            .as_str()
            .context("no id in the create answer")?
            .to_owned();
        if !labels.is_empty() {
            let d = self.publisher.deploy(&id, labels, None).await?;
            if !d.status.is_success() {
                bail!("deploy answered {}: {}", d.status, d.text);
            }
        }
        Ok(id)
    }

    /// Waits (long-poll) until `gateway` runs `revision` of `api`.
    pub async fn wait_applied(
        &self,
        gateway: &str,
        api: &str,
        revision: u32,
    ) -> anyhow::Result<()> {
        let answer = self
            .admin(gateway)?
            .wait_for_revision(api, revision, Duration::from_secs(20))
            .await?;
        if !answer.status.is_success() {
            bail!(
                "{gateway} did not apply revision {revision} of {api}: {} {}\n--- {gateway} log ---\n{}",
                answer.status,
                answer.text,
                tail(&self.cluster.log(gateway), 60)
            );
        }
        Ok(())
    }

    /// The revision `gateway` runs for `api`, if any.
    pub async fn applied_revision(&self, gateway: &str, api: &str) -> anyhow::Result<Option<u64>> {
        let answer = self
            .admin(gateway)?
            .0
            .get(&format!("/api/gateway/v1/apis/{api}"))
            .await?;
        Ok(match answer.status.as_u16() {
            200 => answer.body["revision"].as_u64(),
            404 => None,
            other => bail!("admin answered {other}: {}", answer.text),
        })
    }

    /// A gateway's readiness: (status, details).
    pub async fn readiness(&self, gateway: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!(
            "http://127.0.0.1:{}/health/ready",
            self.gw(gateway)?.admin_port
        );
        let r = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .with_context(|| url.clone())?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(serde_json::Value::Null)))
    }

    /// A gateway's admin `GET /api/gateway/v1/apis`.
    pub async fn admin_apis(&self, gateway: &str) -> anyhow::Result<serde_json::Value> {
        let answer = self.admin(gateway)?.0.get("/api/gateway/v1/apis").await?;
        if !answer.status.is_success() {
            bail!("admin answered {}: {}", answer.status, answer.text);
        }
        Ok(answer.body)
    }

    /// The publisher's `GET /api/v1/apis/{id}/status`.
    pub async fn api_status(&self, api: &str) -> anyhow::Result<serde_json::Value> {
        let answer = self
            .publisher
            .0
            .get(&format!("/api/v1/apis/{api}/status"))
            .await?;
        if !answer.status.is_success() {
            bail!("status answered {}: {}", answer.status, answer.text);
        }
        Ok(answer.body)
    }

    /// What the publisher says a node serving `labels` should run: API id
    /// to the highest revision deployed on one of those labels.
    pub async fn desired_for(&self, labels: &[&str]) -> anyhow::Result<BTreeMap<String, u64>> {
        let list = self.publisher.0.get("/api/v1/apis").await?;
        if !list.status.is_success() {
            bail!("list answered {}: {}", list.status, list.text);
        }
        let mut desired = BTreeMap::new();
        for api in list.body["apis"].as_array().into_iter().flatten() {
            let id = api["id"].as_str().context("an API without id")?;
            let detail = self.publisher.0.get(&format!("/api/v1/apis/{id}")).await?;
            if !detail.status.is_success() {
                bail!("get {id} answered {}: {}", detail.status, detail.text);
            }
            let revision = detail.body["deployments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["label"].as_str().is_some_and(|l| labels.contains(&l)))
                .filter_map(|d| d["revision"].as_u64())
                .max();
            if let Some(revision) = revision {
                desired.insert(id.to_owned(), revision);
            }
        }
        Ok(desired)
    }

    /// What a node's admin API says it runs: API id to (revision, status),
    /// for every API it knows (`revision` 0 when none is applied).
    pub async fn applied_on(
        &self,
        gateway: &str,
    ) -> anyhow::Result<BTreeMap<String, (u64, String)>> {
        let apis = self.admin_apis(gateway).await?;
        let mut applied = BTreeMap::new();
        for api in apis["apis"].as_array().into_iter().flatten() {
            let id = api["apiId"].as_str().context("an API without apiId")?;
            applied.insert(
                id.to_owned(),
                (
                    api["revision"].as_u64().unwrap_or(0),
                    api["status"].as_str().unwrap_or("").to_owned(),
                ),
            );
        }
        Ok(applied)
    }

    /// The API id to revision map of a node's disk cache manifest.
    pub fn cache_manifest(&self, gateway: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        let path = self
            .cluster
            .spec
            .work_dir
            .join("cache")
            .join(gateway)
            .join("manifest.json");
        let manifest: serde_json::Value = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = BTreeMap::new();
        for entry in manifest["apis"].as_array().into_iter().flatten() {
            let id = entry["apiId"]
                .as_str()
                .context("a manifest entry without apiId")?;
            out.insert(id.to_owned(), entry["revision"].as_u64().unwrap_or(0));
        }
        Ok(out)
    }

    /// A counter or gauge from a node's `/metrics` (without labels).
    pub async fn metric(&self, gateway: &str, name: &str) -> anyhow::Result<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.gw(gateway)?.admin_port);
        let text = self.http.get(&url).send().await?.text().await?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (key, value) = l.split_once(' ')?;
                (key == name)
                    .then(|| value.trim().parse::<f64>().ok())
                    .flatten()
            })
            .with_context(|| format!("no metric {name} at {url}"))
    }

    /// An admin `POST` (`redeploy-api`, `undeploy-api`).
    pub async fn admin_post(
        &self,
        gateway: &str,
        path: &str,
    ) -> anyhow::Result<artisync_cli::client::Answer> {
        Ok(self
            .admin(gateway)?
            .0
            .send(reqwest::Method::POST, path, None, &[])
            .await?)
    }

    pub async fn stop(mut self) {
        self.cluster.stop().await;
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {} ms waiting for {what}{}",
                timeout.as_millis(),
                last_error
                    .map(|e| format!(" (last error: {e:#})"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
