//! What a scenario runs against: a cluster of separate processes on
//! PostgreSQL and RabbitMQ (the external mode), or `artisync up` with
//! nothing given (the embedded default: one process, SQLite, the
//! in-process bus).

use artisync_cli::client::PublisherClient;
use artisync_e2e::up::{Up, UpOptions, free_offset};
use artisync_e2e::{TestCluster, TestEnv};

use super::{TempDir, cpu_ms, cpu_ms_of_command, keep_logs, rss_mb};

pub enum Backing {
    External {
        env: Box<TestEnv>,
        cluster: TestCluster,
    },
    Embedded {
        up: Up,
        _dir: TempDir,
    },
}

/// A gateway of the embedded topology: id, admin port, labels.
pub struct EmbeddedNode {
    pub id: String,
    pub admin_port: u16,
    pub labels: Vec<String>,
}

impl Backing {
    /// `artisync up` in the embedded default, without the sample API.
    pub async fn embedded() -> anyhow::Result<(Backing, Vec<EmbeddedNode>)> {
        let dir = TempDir::new("embedded")?;
        let up = Up::start(
            &dir.0.join("up"),
            free_offset()?,
            &UpOptions::embedded().with_no_sample(),
        )
        .await?;
        let mut nodes = Vec::new();
        for gw in up.state["gateways"].as_array().into_iter().flatten() {
            let admin = gw["adminUrl"].as_str().unwrap_or_default();
            nodes.push(EmbeddedNode {
                id: gw["id"].as_str().unwrap_or_default().to_owned(),
                admin_port: admin
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0),
                labels: gw["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect(),
            });
        }
        Ok((Backing::Embedded { up, _dir: dir }, nodes))
    }

    pub fn publisher(&self) -> PublisherClient {
        match self {
            Backing::External { cluster, .. } => cluster.publisher.clone(),
            Backing::Embedded { up, .. } => {
                let (url, token) = up.publisher();
                PublisherClient::new(&url, &token)
            }
        }
    }

    pub fn admin_token(&self) -> String {
        match self {
            Backing::External { cluster, .. } => cluster.cluster.spec.admin_token.clone(),
            Backing::Embedded { up, .. } => up.state["gateways"][0]["adminToken"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// CPU ms so far, by component (PostgreSQL and RabbitMQ are every
    /// `postgres` / `beam.smp` process, so other work there counts too).
    pub fn cpu_by_component(&mut self, gateways: &[String]) -> Vec<(&'static str, f64)> {
        let mut out = Vec::new();
        match self {
            Backing::External { cluster, .. } => {
                let mut pid_cpu = |name: &str| {
                    cluster
                        .cluster
                        .process(name)
                        .and_then(|p| p.pid())
                        .and_then(cpu_ms)
                        .unwrap_or(0.0)
                };
                out.push(("publisher", pid_cpu(artisync_e2e::cluster::PUBLISHER)));
                out.push((
                    "traffic manager",
                    pid_cpu(artisync_e2e::cluster::TRAFFIC_MANAGER),
                ));
                let sum = gateways.iter().map(|id| pid_cpu(id)).sum();
                out.push(("gateways (sum)", sum));
                out.push(("postgresql (all backends)", cpu_ms_of_command("postgres")));
                out.push(("mariadb (mariadbd)", cpu_ms_of_command("mariadbd")));
                out.push(("rabbitmq (beam.smp)", cpu_ms_of_command("beam.smp")));
            }
            Backing::Embedded { up, .. } => {
                out.push((
                    "artisync up (every component)",
                    up.pid().and_then(cpu_ms).unwrap_or(0.0),
                ));
            }
        }
        out.push(("bench client", cpu_ms(std::process::id()).unwrap_or(0.0)));
        out
    }

    /// Max VmHWM and VmRSS over the gateways' processes (the one process
    /// in the embedded default).
    pub fn peak_rss(&mut self, gateways: &[String]) -> (f64, f64) {
        let pids: Vec<u32> = match self {
            Backing::External { cluster, .. } => gateways
                .iter()
                .filter_map(|id| cluster.cluster.process(id).and_then(|p| p.pid()))
                .collect(),
            Backing::Embedded { up, .. } => up.pid().into_iter().collect(),
        };
        pids.into_iter()
            .filter_map(rss_mb)
            .fold((0.0, 0.0), |(h, r), (hwm, rss)| {
                (f64::max(h, hwm), f64::max(r, rss))
            })
    }

    /// The publisher's peak RSS.
    pub fn publisher_rss(&mut self) -> Option<f64> {
        let pid = match self {
            Backing::External { cluster, .. } => cluster
                .cluster
                .process(artisync_e2e::cluster::PUBLISHER)
                .and_then(|p| p.pid()),
            Backing::Embedded { up, .. } => up.pid(),
        };
        pid.and_then(rss_mb).map(|(h, _)| h)
    }

    pub fn keep_logs(&self, scenario: &str) {
        match self {
            Backing::External { env, .. } => keep_logs(env, scenario),
            Backing::Embedded { up, .. } => eprintln!("artisync up said:\n{}", up.output()),
        }
    }

    pub async fn stop(self) {
        match self {
            Backing::External { env, cluster } => {
                cluster.stop().await;
                drop(env);
            }
            Backing::Embedded { up, _dir } => {
                let _ = up.interrupt().await;
            }
        }
    }
}
