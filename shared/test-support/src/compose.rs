//! The compose interpreter: compose.yaml, run as processes, so that no
//! Docker engine is needed.
//!
//! The test reads compose.yaml (and `.env.example` for its `${VARIABLES}`),
//! checks what a Docker engine would only find out at run time (names,
//! ports, volumes, healthchecks, dependencies, secrets), then starts the
//! real binaries exactly as compose would: the same command, the same
//! environment and the same mounted config files. Only what cannot be the
//! same without containers is mapped, each in one place below:
//!
//! - host names of services become 127.0.0.1, and each container port of
//!   each service instance a free local port (in URLs and in listen
//!   addresses of the config files and the environment);
//! - PostgreSQL and RabbitMQ are the local ones: a URL pointing at the
//!   `postgres` / `rabbitmq` service is checked against that service's
//!   user, password and database, then replaced by an isolated test
//!   database and the local broker;
//! - mount targets become directories of a per-instance root (config files
//!   copied there with the above rewrites, named volumes empty);
//! - the exchange and queue prefix are made unique with
//!   `ARTISYNC_AMQP__EXCHANGE`, `ARTISYNC_GATEWAY__EXCHANGE` and
//!   `ARTISYNC_GATEWAY__QUEUE_PREFIX`, so that tests can run side by side.
//!
//! A renamed config key or environment variable makes a binary exit with
//! code 2 at start-up (unknown keys are refused), so this test fails; the
//! test proves it on mutated copies of the compose model first.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{TestEnv, tail};
use anyhow::{Context, bail, ensure};
use artisync_cli::cluster::free_port;
use regex::{Captures, Regex};
use serde_norway::{Mapping, Value};
use tokio::process::{Child, Command};

pub const PROD: &str = "Production and Sandbox";
pub const LABEL1: &str = "Label1";

/// Our binaries, as compose's `command` names them.
pub const PUBLISHER: &str = "publisher";
pub const TRAFFIC_MANAGER: &str = "traffic-manager";
pub const GATEWAY: &str = "gateway-node";
pub const CLI: &str = "artisync";

/// The workspace root: this crate lives in `shared/test-support`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

// ---------------------------------------------------------------------------
// Reading compose.yaml

/// `KEY=VALUE` lines of an env file, as compose reads `.env`.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            vars.insert(k.trim().to_owned(), v.to_owned());
        }
    }
    vars
}

/// Compose's interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`,
/// `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let re = Regex::new(
        r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))",
    )?;
    let errors = RefCell::new(Vec::new());
    let out = re.replace_all(text, |c: &Captures| {
        if c.get(1).is_some() {
            return "$".to_owned();
        }
        let name = c.get(2).or(c.get(5)).map_or("", |m| m.as_str());
        let value = vars.get(name);
        let op = c.get(3).map(|m| m.as_str());
        let arg = c.get(4).map_or("", |m| m.as_str());
        let unset_or_empty = value.is_none_or(|v| v.is_empty());
        match op {
            Some(":-") if unset_or_empty => arg.to_owned(),
            Some("-") if value.is_none() => arg.to_owned(),
            Some(":?") if unset_or_empty => {
                errors
                    .borrow_mut()
                    .push(format!("required variable {name} is missing: {arg}"));
                String::new()
            }
            Some("?") if value.is_none() => {
                errors
                    .borrow_mut()
                    .push(format!("required variable {name} is missing: {arg}"));
                String::new()
            }
            _ => value.cloned().unwrap_or_default(),
        }
    });
    let errors = errors.into_inner();
    ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(out.into_owned())
}

/// YAML merge keys (`<<: *anchor`), applied until none is left, so that
/// merged mappings that merge others themselves work as in compose.
pub fn apply_merges(value: &mut Value) -> anyhow::Result<()> {
    match value {
        Value::Mapping(map) => {
            while let Some(merge) = map.remove("<<") {
                let sources = match merge {
                    Value::Mapping(m) => vec![m],
                    Value::Sequence(seq) => seq
                        .into_iter()
                        .map(|v| match v {
                            Value::Mapping(m) => Ok(m),
                            _ => bail!("a merge key list holds a non-mapping"),
                        })
                        .collect::<anyhow::Result<_>>()?,
                    _ => bail!("a merge key holds a non-mapping"),
                };
                for source in sources {
                    for (k, v) in source {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            for v in map.values_mut() {
                apply_merges(v)?;
            }
        }
        Value::Sequence(seq) => {
            for v in seq {
                apply_merges(v)?;
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn interpolate_all(value: &mut Value, vars: &BTreeMap<String, String>) -> anyhow::Result<()> {
    match value {
        Value::String(s) => *s = interpolate(s, vars)?,
        Value::Mapping(map) => {
            for v in map.values_mut() {
                interpolate_all(v, vars)?;
            }
        }
        Value::Sequence(seq) => {
            for v in seq {
                interpolate_all(v, vars)?;
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn string_list(v: Option<&Value>, what: &str) -> anyhow::Result<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(seq)) => seq
            .iter()
            .map(|v| scalar(v).with_context(|| format!("{what}: not a scalar: {v:?}")))
            .collect(),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(other) => bail!("{what}: unexpected {other:?}"),
    }
}

#[derive(Debug, Clone)]
pub struct Mount {
    /// Named volume, or `None` for a bind mount.
    pub volume: Option<String>,
    /// Bind mount source, relative to the compose file.
    pub source: Option<PathBuf>,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub struct Port {
    pub host_ip: Option<String>,
    pub host: Option<u16>,
    pub container: u16,
}

#[derive(Debug, Clone)]
pub struct Healthcheck {
    pub test: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    pub build: bool,
    /// `entrypoint` followed by `command`.
    pub argv: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    pub ports: Vec<Port>,
    pub expose: Vec<u16>,
    pub healthcheck: Option<Healthcheck>,
    /// Dependency -> condition.
    pub depends_on: BTreeMap<String, String>,
    pub replicas: usize,
}

impl Service {
    pub fn binary(&self) -> Option<&str> {
        self.argv
            .first()
            .map(String::as_str)
            .filter(|b| [PUBLISHER, TRAFFIC_MANAGER, GATEWAY, CLI].contains(b))
    }

    pub fn infra(&self) -> Option<Infra> {
        let image = self.image.as_deref()?;
        if image.starts_with("postgres:") || image == "postgres" {
            Some(Infra::Postgres)
        } else if image.starts_with("rabbitmq:") || image == "rabbitmq" {
            Some(Infra::RabbitMq)
        } else {
            None
        }
    }

    /// Every container port the service is known to listen on.
    pub fn container_ports(&self) -> BTreeSet<u16> {
        let mut ports: BTreeSet<u16> = self.ports.iter().map(|p| p.container).collect();
        ports.extend(&self.expose);
        if let Some(hc) = &self.healthcheck {
            for arg in &hc.test {
                if let Some(port) = url_port(arg) {
                    ports.insert(port);
                }
            }
        }
        ports
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Infra {
    Postgres,
    RabbitMq,
}

pub fn url_port(text: &str) -> Option<u16> {
    let re = Regex::new(r"^[a-z]+://[^/:]+:(\d+)").ok()?;
    re.captures(text)?.get(1)?.as_str().parse().ok()
}

#[derive(Debug, Clone)]
pub struct Compose {
    pub services: BTreeMap<String, Service>,
    pub volumes: BTreeSet<String>,
    pub vars: BTreeMap<String, String>,
}

pub fn parse_port(v: &Value) -> anyhow::Result<Port> {
    let text = match v {
        Value::Mapping(m) => {
            let target = m
                .get("target")
                .and_then(scalar)
                .context("port without target")?;
            return Ok(Port {
                host_ip: m.get("host_ip").and_then(scalar),
                host: m
                    .get("published")
                    .and_then(scalar)
                    .map(|p| p.parse())
                    .transpose()?,
                container: target.parse()?,
            });
        }
        other => scalar(other).context("port is not a string")?,
    };
    let text = text.split('/').next().unwrap_or_default();
    let parts: Vec<&str> = text.split(':').collect();
    let container = parts.last().context("empty port")?.parse()?;
    let (host_ip, host) = match parts.as_slice() {
        [_] => (None, None),
        [host, _] => (None, Some(host.parse()?)),
        [ip, host, _] => (Some((*ip).to_owned()), Some(host.parse()?)),
        _ => bail!("cannot read the port {text:?}"),
    };
    Ok(Port {
        host_ip,
        host,
        container,
    })
}

pub fn parse_mount(v: &Value) -> anyhow::Result<Mount> {
    let text = scalar(v).context("only the short volume syntax is read")?;
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => bail!("cannot read the volume {text:?}"),
    };
    let bind = source.starts_with('.') || source.starts_with('/');
    Ok(Mount {
        volume: (!bind).then(|| source.to_owned()),
        source: bind.then(|| PathBuf::from(source)),
        target: target.to_owned(),
        read_only: mode.split(',').any(|m| m == "ro"),
    })
}

pub fn parse_service(name: &str, v: &Value) -> anyhow::Result<Service> {
    let m = v
        .as_mapping()
        .with_context(|| format!("service {name} is not a mapping"))?;
    let mut argv = string_list(m.get("entrypoint"), "entrypoint")?;
    argv.extend(string_list(m.get("command"), "command")?);
    let mut environment = BTreeMap::new();
    match m.get("environment") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(env)) => {
            for (k, v) in env {
                let k = scalar(k).context("environment key")?;
                environment.insert(k, scalar(v).unwrap_or_default());
            }
        }
        Some(Value::Sequence(list)) => {
            for item in list {
                let item = scalar(item).context("environment item")?;
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                environment.insert(k.to_owned(), v.to_owned());
            }
        }
        Some(other) => bail!("{name}: environment is {other:?}"),
    }
    let seq = |key: &str| -> Vec<Value> {
        m.get(key)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default()
    };
    let mounts = seq("volumes")
        .iter()
        .map(parse_mount)
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("{name}: volumes"))?;
    let ports = seq("ports")
        .iter()
        .map(parse_port)
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("{name}: ports"))?;
    let expose = seq("expose")
        .iter()
        .map(|v| Ok(scalar(v).context("expose")?.parse()?))
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("{name}: expose"))?;
    let healthcheck = match m.get("healthcheck") {
        None => None,
        Some(hc) => {
            let test = match hc.get("test") {
                Some(Value::String(s)) => vec!["CMD-SHELL".to_owned(), s.clone()],
                other => string_list(other, "healthcheck.test")?,
            };
            Some(Healthcheck { test })
        }
    };
    let depends_on = match m.get("depends_on") {
        None => BTreeMap::new(),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|d| {
                Ok((
                    scalar(d).context("depends_on")?,
                    "service_started".to_owned(),
                ))
            })
            .collect::<anyhow::Result<_>>()?,
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                Ok((
                    scalar(k).context("depends_on")?,
                    v.get("condition")
                        .and_then(scalar)
                        .unwrap_or_else(|| "service_started".into()),
                ))
            })
            .collect::<anyhow::Result<_>>()?,
        Some(other) => bail!("{name}: depends_on is {other:?}"),
    };
    let replicas = match m.get("deploy").and_then(|d| d.get("replicas")) {
        None => 1,
        Some(r) => scalar(r).context("deploy.replicas")?.parse()?,
    };
    Ok(Service {
        name: name.to_owned(),
        image: m.get("image").and_then(scalar),
        build: m.get("build").is_some(),
        argv,
        environment,
        mounts,
        ports,
        expose,
        healthcheck,
        depends_on,
        replicas,
    })
}

pub fn load_compose(compose_text: &str, env_text: &str) -> anyhow::Result<Compose> {
    let vars = parse_env_file(env_text);
    let mut doc: Value = serde_norway::from_str(compose_text).context("compose.yaml")?;
    apply_merges(&mut doc)?;
    interpolate_all(&mut doc, &vars)?;
    let services = doc
        .get("services")
        .and_then(Value::as_mapping)
        .context("compose.yaml has no services")?
        .iter()
        .map(|(k, v)| {
            let name = scalar(k).context("service name")?;
            Ok((name.clone(), parse_service(&name, v)?))
        })
        .collect::<anyhow::Result<_>>()?;
    let volumes = doc
        .get("volumes")
        .and_then(Value::as_mapping)
        .map(|m: &Mapping| m.keys().filter_map(scalar).collect())
        .unwrap_or_default();
    Ok(Compose {
        services,
        volumes,
        vars,
    })
}

// ---------------------------------------------------------------------------
// What compose.yaml must say, checked without running anything

/// Names of environment variables a binary reads besides `ARTISYNC_*`
/// (checked by the binary itself: unknown keys are refused).
pub fn aliases_of(binary: &str) -> Vec<&'static str> {
    match binary {
        PUBLISHER => artisync_publisher::config::ENV_ALIASES
            .iter()
            .map(|(v, _)| *v)
            .collect(),
        TRAFFIC_MANAGER => artisync_traffic_manager::config::ENV_ALIASES
            .iter()
            .map(|(v, _)| *v)
            .collect(),
        GATEWAY => artisync_gateway::config::ENV_ALIASES
            .iter()
            .map(|(v, _)| *v)
            .collect(),
        _ => Vec::new(),
    }
}

/// Every `*.rs` file under `dir`, concatenated.
pub fn sources(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    out
}

/// An environment variable compose sets for one of our binaries must be
/// read by it: a config override (`ARTISYNC_*`, checked by the binary), one
/// of its aliases, `RUST_LOG`, or a name the shared telemetry code reads.
pub fn check_env_names(service: &Service) -> anyhow::Result<()> {
    let Some(binary) = service.binary() else {
        return Ok(());
    };
    let aliases = aliases_of(binary);
    let shared = sources(&repo_root().join("shared"));
    for name in service.environment.keys() {
        let known = name.starts_with("ARTISYNC_")
            || aliases.contains(&name.as_str())
            || name == "RUST_LOG"
            || shared.contains(&format!("\"{name}\""));
        ensure!(
            known,
            "service {}: {binary} reads no environment variable {name} (its aliases: {})",
            service.name,
            aliases.join(", ")
        );
    }
    Ok(())
}

pub fn check_static(compose: &Compose, compose_text: &str) -> anyhow::Result<()> {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).context("Dockerfile")?;
    let dockerignore =
        std::fs::read_to_string(root.join(".dockerignore")).context(".dockerignore")?;
    ensure!(
        dockerignore.lines().any(|l| l.trim() == ".env"),
        ".dockerignore must keep .env out of the build context"
    );
    let mut infra = BTreeSet::new();
    for s in compose.services.values() {
        let hc = s
            .healthcheck
            .as_ref()
            .with_context(|| format!("service {} has no healthcheck", s.name))?;
        ensure!(
            matches!(
                hc.test.first().map(String::as_str),
                Some("CMD" | "CMD-SHELL")
            ) && hc.test.len() > 1,
            "service {}: healthcheck test {:?}",
            s.name,
            hc.test
        );
        for (dep, condition) in &s.depends_on {
            ensure!(
                compose.services.contains_key(dep),
                "{} depends on {dep}, which is no service",
                s.name
            );
            ensure!(
                condition == "service_healthy",
                "{} depends on {dep} with condition {condition}, not service_healthy",
                s.name
            );
        }
        for m in &s.mounts {
            if let Some(v) = &m.volume {
                ensure!(
                    compose.volumes.contains(v),
                    "{}: volume {v} is not declared under volumes:",
                    s.name
                );
            }
            if let Some(src) = &m.source {
                let path = root.join(src);
                ensure!(
                    path.is_file(),
                    "{}: bind mount {} does not exist",
                    s.name,
                    path.display()
                );
                ensure!(m.read_only, "{}: {} is not mounted :ro", s.name, m.target);
            }
        }
        match (s.binary(), s.infra()) {
            (Some(binary), _) => {
                ensure!(
                    s.build && s.image.is_some(),
                    "{}: our services build and name the image",
                    s.name
                );
                ensure!(
                    dockerfile.contains(&format!("target/release/{binary}")),
                    "the Dockerfile does not copy {binary} into the image"
                );
                if hc.test[0] == "CMD" {
                    let tool = hc.test[1].as_str();
                    ensure!(
                        [PUBLISHER, TRAFFIC_MANAGER, GATEWAY, CLI].contains(&tool)
                            || dockerfile.contains(&format!(" {tool}")),
                        "{}: the healthcheck runs {tool}, which the Dockerfile does not install",
                        s.name
                    );
                }
                for m in s.mounts.iter().filter(|m| m.volume.is_some()) {
                    ensure!(
                        dockerfile.contains(&m.target),
                        "{}: the image does not create {} (a named volume there would belong to root)",
                        s.name,
                        m.target
                    );
                }
                if binary != GATEWAY && binary != PUBLISHER {
                    ensure!(
                        s.ports.is_empty(),
                        "{}: only the publisher and the gateways publish ports",
                        s.name
                    );
                }
                check_env_names(s)?;
            }
            (None, Some(kind)) => {
                ensure!(infra.insert(kind), "two {kind:?} services");
                ensure!(s.ports.is_empty(), "{}: publishes a port", s.name);
                ensure!(
                    s.mounts.iter().any(|m| m.volume.is_some()),
                    "{}: its data is in no named volume",
                    s.name
                );
            }
            (None, None) => bail!(
                "service {} runs neither an artisync binary nor PostgreSQL/RabbitMQ; teach this test about it",
                s.name
            ),
        }
    }
    ensure!(
        infra.len() == 2,
        "PostgreSQL and RabbitMQ services are both needed"
    );
    // Secrets come from .env: none of the example values is written into
    // compose.yaml, the config files or the Dockerfile.
    let mut texts = vec![
        ("compose.yaml".to_owned(), compose_text.to_owned()),
        ("Dockerfile".to_owned(), dockerfile.clone()),
    ];
    for entry in std::fs::read_dir(root.join("config"))?.flatten() {
        texts.push((
            entry.path().display().to_string(),
            std::fs::read_to_string(entry.path()).unwrap_or_default(),
        ));
    }
    for (var, value) in &compose.vars {
        let secret = ["TOKEN", "PASSWORD", "SECRET"]
            .iter()
            .any(|w| var.contains(w));
        if secret {
            ensure!(value.len() >= 8, ".env.example: {var} is shorter than 8");
            for (file, text) in &texts {
                ensure!(
                    !text.contains(value.as_str()),
                    "{file} holds the secret value of {var}"
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Running the services as processes

/// One process per service replica.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `publisher`, `traffic-manager#1`, ...
    pub name: String,
    pub service: String,
    /// Container port -> local port.
    pub ports: BTreeMap<u16, u16>,
    /// Where this instance's container file system is emulated.
    pub root: PathBuf,
}

impl Instance {
    pub fn local_port(&self, container: u16) -> anyhow::Result<u16> {
        self.ports.get(&container).copied().with_context(|| {
            format!(
                "{} uses port {container}, which its service declares nowhere (ports, expose, healthcheck)",
                self.name
            )
        })
    }
}

/// A command line and its environment.
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The compose project mapped onto this machine.
pub struct Topology {
    pub compose: Compose,
    pub instances: Vec<Instance>,
    /// Which replica of a service each instance talks to (DNS round-robin,
    /// made deterministic: the n-th client gets replica n mod replicas).
    pub picks: BTreeMap<(String, String), usize>,
    pub database_url: String,
    pub amqp_url: String,
    pub exchange: String,
    pub queue_prefix: String,
    pub work_dir: PathBuf,
}

impl Topology {
    pub fn new(compose: Compose, env: &TestEnv, work_dir: PathBuf) -> anyhow::Result<Topology> {
        let mut instances = Vec::new();
        for s in compose.services.values().filter(|s| s.binary().is_some()) {
            for i in 1..=s.replicas.max(1) {
                let name = if s.replicas > 1 {
                    format!("{}#{i}", s.name)
                } else {
                    s.name.clone()
                };
                let ports = s
                    .container_ports()
                    .into_iter()
                    .map(|p| Ok((p, free_port()?)))
                    .collect::<anyhow::Result<_>>()?;
                let root = work_dir.join(name.replace('#', "-"));
                instances.push(Instance {
                    name,
                    service: s.name.clone(),
                    ports,
                    root,
                });
            }
        }
        let mut picks = BTreeMap::new();
        let mut next: BTreeMap<String, usize> = BTreeMap::new();
        for from in &instances {
            for to in compose.services.values().filter(|s| s.replicas > 1) {
                let n = next.entry(to.name.clone()).or_default();
                picks.insert((from.name.clone(), to.name.clone()), *n % to.replicas);
                *n += 1;
            }
        }
        Ok(Topology {
            compose,
            instances,
            picks,
            database_url: env.db.url.clone(),
            amqp_url: env.amqp_url.clone(),
            exchange: env.exchange.clone(),
            queue_prefix: env.queue_prefix.clone(),
            work_dir,
        })
    }

    pub fn service(&self, name: &str) -> anyhow::Result<&Service> {
        self.compose
            .services
            .get(name)
            .with_context(|| format!("no service {name}"))
    }

    pub fn instance(&self, name: &str) -> anyhow::Result<&Instance> {
        self.instances
            .iter()
            .find(|i| i.name == name)
            .with_context(|| format!("no instance {name}"))
    }

    pub fn instances_of(&self, service: &str) -> Vec<&Instance> {
        self.instances
            .iter()
            .filter(|i| i.service == service)
            .collect()
    }

    /// The instance of `service` that `from` reaches by its name.
    pub fn resolve(&self, from: &Instance, service: &str) -> anyhow::Result<&Instance> {
        let replicas = self.instances_of(service);
        ensure!(!replicas.is_empty(), "no instance of {service}");
        let pick = self
            .picks
            .get(&(from.name.clone(), service.to_owned()))
            .copied()
            .unwrap_or(0);
        Ok(replicas[pick % replicas.len()])
    }

    /// Checks a URL to PostgreSQL against the postgres service, returns the
    /// test database's URL.
    pub fn postgres_url(&self, c: &Captures, infra: &Service) -> anyhow::Result<String> {
        let env = &infra.environment;
        let user = env.get("POSTGRES_USER").map_or("postgres", String::as_str);
        let db = env.get("POSTGRES_DB").map_or(user, String::as_str);
        let password = env.get("POSTGRES_PASSWORD").map(String::as_str);
        let got = |i| c.get(i).map(|m| m.as_str());
        ensure!(got(2) == Some(user), "database URL user is not {user}");
        ensure!(
            got(3) == password,
            "database URL password is not the postgres service's POSTGRES_PASSWORD"
        );
        ensure!(
            got(5).is_none_or(|p| p == "5432"),
            "PostgreSQL listens on 5432"
        );
        ensure!(
            got(6).map(|p| p.split('?').next().unwrap_or_default()) == Some(&format!("/{db}")),
            "database URL does not name the database {db}"
        );
        Ok(self.database_url.clone())
    }

    pub fn amqp_url(&self, c: &Captures, infra: &Service) -> anyhow::Result<String> {
        let env = &infra.environment;
        let user = env
            .get("RABBITMQ_DEFAULT_USER")
            .map_or("guest", String::as_str);
        let password = env
            .get("RABBITMQ_DEFAULT_PASS")
            .map_or("guest", String::as_str);
        let got = |i| c.get(i).map(|m| m.as_str());
        ensure!(got(2) == Some(user), "broker URL user is not {user}");
        ensure!(
            got(3) == Some(password),
            "broker URL password is not the rabbitmq service's RABBITMQ_DEFAULT_PASS"
        );
        ensure!(
            got(5).is_none_or(|p| p == "5672"),
            "RabbitMQ listens on 5672"
        );
        ensure!(
            matches!(got(6), None | Some("" | "/" | "/%2f" | "/%2F")),
            "the broker URL names a vhost other than /"
        );
        Ok(self.amqp_url.clone())
    }

    /// Rewrites a text the way the container's view maps onto this machine:
    /// service URLs and listen addresses to local ports, mount targets to
    /// the instance's root.
    pub fn rewrite(&self, from: &Instance, text: &str) -> anyhow::Result<String> {
        let re = Regex::new(concat!(
            // 1 scheme, 2 user, 3 password, 4 host, 5 port, 6 path
            r#"([a-z][a-z0-9+.-]*)://(?:([^:@/\s"'\]]*)(?::([^@/\s"'\]]*))?@)?"#,
            r#"([A-Za-z0-9_.-]+)(?::(\d+))?([^\s"',\]}]*)"#,
            // 7 address, 8 port: listen addresses
            r#"|\b(0\.0\.0\.0|127\.0\.0\.1|localhost):(\d+)\b"#,
        ))?;
        let errors = RefCell::new(Vec::new());
        let out = re.replace_all(text, |c: &Captures| {
            let result = self.rewrite_match(from, c);
            result.unwrap_or_else(|e| {
                errors
                    .borrow_mut()
                    .push(format!("{}: {:?}: {e:#}", from.name, &c[0]));
                c[0].to_owned()
            })
        });
        let errors = errors.into_inner();
        ensure!(errors.is_empty(), "{}", errors.join("\n"));
        Ok(self.rewrite_paths(from, &out))
    }

    pub fn rewrite_match(&self, from: &Instance, c: &Captures) -> anyhow::Result<String> {
        if c.get(7).is_some() {
            let port: u16 = c[8].parse()?;
            let local = from.local_port(port)?;
            return Ok(format!("127.0.0.1:{local}"));
        }
        let (scheme, host) = (&c[1], &c[4]);
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            "amqp" => 5672,
            "postgres" | "postgresql" => 5432,
            _ => 0,
        };
        let port: u16 = c.get(5).map_or(Ok(default_port), |p| p.as_str().parse())?;
        let rest = c.get(6).map_or("", |m| m.as_str());
        if let Some(service) = self.compose.services.get(host) {
            return match service.infra() {
                Some(Infra::Postgres) => self.postgres_url(c, service),
                Some(Infra::RabbitMq) => self.amqp_url(c, service),
                None => {
                    let target = self.resolve(from, host)?;
                    let local = target.local_port(port)?;
                    let auth = match (c.get(2), c.get(3)) {
                        (Some(u), Some(p)) => format!("{}:{}@", u.as_str(), p.as_str()),
                        (Some(u), None) => format!("{}@", u.as_str()),
                        _ => String::new(),
                    };
                    Ok(format!("{scheme}://{auth}127.0.0.1:{local}{rest}"))
                }
            };
        }
        if ["127.0.0.1", "localhost", "0.0.0.0"].contains(&host) {
            let local = from.local_port(port)?;
            return Ok(format!("{scheme}://127.0.0.1:{local}{rest}"));
        }
        Ok(c[0].to_owned())
    }

    /// Mount targets (longest first, one pass) to the instance's root.
    pub fn rewrite_paths(&self, from: &Instance, text: &str) -> String {
        let Ok(service) = self.service(&from.service) else {
            return text.to_owned();
        };
        let mut targets: Vec<&str> = service.mounts.iter().map(|m| m.target.as_str()).collect();
        if targets.is_empty() {
            return text.to_owned();
        }
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        let alternatives: Vec<String> = targets.iter().map(|t| regex::escape(t)).collect();
        let Ok(re) = Regex::new(&format!(
            r#"(^|[\s"'=])({})([/\s"',]|$)"#,
            alternatives.join("|")
        )) else {
            return text.to_owned();
        };
        let root = from.root.display().to_string();
        re.replace_all(text, |c: &Captures| {
            format!("{}{root}{}{}", &c[1], &c[2], &c[3])
        })
        .into_owned()
    }

    /// Lays out the instance's file system: config files rewritten, named
    /// volumes as empty directories.
    pub fn prepare(&self, instance: &Instance, service: &Service) -> anyhow::Result<()> {
        for m in &service.mounts {
            let local = instance.root.join(m.target.trim_start_matches('/'));
            match &m.source {
                Some(source) => {
                    let text = std::fs::read_to_string(repo_root().join(source))
                        .with_context(|| format!("reading {}", source.display()))?;
                    let text = self
                        .rewrite(instance, &text)
                        .with_context(|| format!("in {}", source.display()))?;
                    std::fs::create_dir_all(local.parent().context("mount target")?)?;
                    std::fs::write(&local, text)?;
                }
                None => std::fs::create_dir_all(&local)?,
            }
        }
        Ok(())
    }

    /// The command line and environment compose would give the instance.
    pub fn launch(&self, instance: &Instance, service: &Service) -> anyhow::Result<Launch> {
        self.prepare(instance, service)?;
        let binary = service.binary().context("not an artisync service")?;
        let program = binary_path(binary)?;
        let args = service.argv[1..]
            .iter()
            .map(|a| self.rewrite(instance, a))
            .collect::<anyhow::Result<_>>()?;
        let mut env = vec![
            (
                "PATH".to_owned(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            ),
            ("HOSTNAME".to_owned(), instance.name.replace('#', "-")),
            ("HOME".to_owned(), instance.root.display().to_string()),
        ];
        for (k, v) in &service.environment {
            let v = self
                .rewrite(instance, v)
                .with_context(|| format!("in {}'s environment variable {k}", service.name))?;
            env.push((k.clone(), v));
        }
        // Isolation from other tests (see the module comment).
        match binary {
            PUBLISHER => env.push(("ARTISYNC_AMQP__EXCHANGE".into(), self.exchange.clone())),
            GATEWAY => {
                env.push(("ARTISYNC_GATEWAY__EXCHANGE".into(), self.exchange.clone()));
                env.push((
                    "ARTISYNC_GATEWAY__QUEUE_PREFIX".into(),
                    self.queue_prefix.clone(),
                ));
            }
            _ => {}
        }
        Ok(Launch { program, args, env })
    }

    pub fn spawn(&self, instance: &Instance, service: &Service) -> anyhow::Result<Proc> {
        std::fs::create_dir_all(&instance.root)?;
        let Launch { program, args, env } = self
            .launch(instance, service)
            .with_context(|| format!("preparing {}", instance.name))?;
        Proc::spawn(
            &instance.name,
            &program,
            &args,
            &env,
            &instance.root,
            &self
                .work_dir
                .join(format!("{}.log", instance.name.replace('#', "-"))),
        )
    }

    /// Runs the service's healthcheck command, as the container would, on
    /// the instance's ports.
    pub async fn healthy(&self, instance: &Instance, service: &Service) -> anyhow::Result<bool> {
        let hc = service.healthcheck.as_ref().context("no healthcheck")?;
        let argv = hc.test[1..]
            .iter()
            .map(|a| self.rewrite(instance, a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut command = match hc.test[0].as_str() {
            "CMD" => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            _ => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(argv.join(" "));
                c
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let status = match tokio::time::timeout(Duration::from_secs(5), command.status()).await {
            Err(_) => return Ok(false),
            Ok(Ok(status)) => status,
            // The image has curl; a machine without it gets the same GET.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound && argv[0] == "curl" => {
                return curl_fallback(&argv).await;
            }
            Ok(Err(e)) => {
                return Err(e).with_context(|| format!("running the healthcheck {argv:?}"));
            }
        };
        Ok(status.success())
    }
}

/// `curl -f URL` without curl: a GET that must answer 2xx.
pub async fn curl_fallback(argv: &[String]) -> anyhow::Result<bool> {
    let url = argv
        .iter()
        .find(|a| a.starts_with("http://"))
        .with_context(|| format!("no URL in the healthcheck {argv:?}"))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    Ok(client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success()))
}

/// The binary beside the test executable (target/<profile>/<name>).
pub fn binary_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("test executable directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("target directory")?;
    }
    let path = dir.join(name);
    ensure!(
        path.is_file(),
        "{} is missing; run `cargo build --workspace --bins` first",
        path.display()
    );
    Ok(path)
}

/// A child process with a clean environment (as in a container) and its
/// output in a log file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        cwd: &Path,
        log: &Path,
    ) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(log)?;
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit", self.name))?
            .map_err(Into::into)
    }

    /// SIGTERM (what `docker compose stop` sends), then SIGKILL.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The running project.
pub struct Running {
    pub procs: Vec<Proc>,
}

impl Running {
    pub fn log(&self, name: &str) -> String {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .map(Proc::log)
            .unwrap_or_default()
    }

    pub async fn stop(mut self) {
        // Gateways first, as `docker compose down` stops dependents first.
        self.procs.reverse();
        for p in &mut self.procs {
            p.stop().await;
        }
    }
}

/// Starts every artisync service in `depends_on` order, each only after its
/// dependencies passed their healthchecks (`condition: service_healthy`);
/// the PostgreSQL and RabbitMQ services are the local ones, already up.
pub async fn up(topology: &Topology) -> anyhow::Result<Running> {
    let mut running = Running { procs: Vec::new() };
    let mut healthy: BTreeSet<String> = topology
        .compose
        .services
        .values()
        .filter(|s| s.infra().is_some())
        .map(|s| s.name.clone())
        .collect();
    let ours: Vec<&Service> = topology
        .compose
        .services
        .values()
        .filter(|s| s.binary().is_some())
        .collect();
    while healthy.len() < topology.compose.services.len() {
        let wave: Vec<&Service> = ours
            .iter()
            .copied()
            .filter(|s| !healthy.contains(&s.name))
            .filter(|s| s.depends_on.keys().all(|d| healthy.contains(d)))
            .collect();
        ensure!(!wave.is_empty(), "depends_on has a cycle");
        let mut started = Vec::new();
        for s in &wave {
            for instance in topology.instances_of(&s.name) {
                running.procs.push(topology.spawn(instance, s)?);
                started.push((instance, *s, running.procs.len() - 1));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for (instance, service, index) in started {
            loop {
                if topology.healthy(instance, service).await? {
                    break;
                }
                let p = &mut running.procs[index];
                if let Some(status) = p.exited() {
                    bail!(
                        "{} exited ({status}) before it was healthy; its log:\n{}",
                        p.name,
                        tail(&p.log(), 60)
                    );
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} was not healthy within 60 s; its log:\n{}",
                        p.name,
                        tail(&p.log(), 60)
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        healthy.extend(wave.iter().map(|s| s.name.clone()));
    }
    Ok(running)
}

// ---------------------------------------------------------------------------
// The gateways as configured

/// Looks up a dotted key in the instance's TOML file, unless the compose
/// environment overrides it.
pub fn config_value(service: &Service, dotted: &str, alias: Option<&str>) -> anyhow::Result<Value> {
    let env_key = format!("ARTISYNC_{}", dotted.replace('.', "__").to_uppercase());
    for key in [Some(env_key.as_str()), alias].into_iter().flatten() {
        if let Some(v) = service.environment.get(key) {
            return Ok(Value::String(v.clone()));
        }
    }
    let mount = service
        .mounts
        .iter()
        .find(|m| m.source.is_some() && service.argv.contains(&m.target))
        .with_context(|| format!("{}: no config file on its command line", service.name))?;
    let path = repo_root().join(mount.source.as_ref().context("bind mount")?);
    let text = std::fs::read_to_string(&path)?;
    let mut value: toml::Value = toml::from_str(&text)?;
    for part in dotted.split('.') {
        value = match value.get(part) {
            Some(v) => v.clone(),
            None => return Ok(Value::Null),
        };
    }
    Ok(serde_norway::to_value(value)?)
}

pub struct GatewayNode {
    pub service: String,
    pub id: String,
    pub labels: Vec<String>,
}

pub fn gateways(compose: &Compose) -> anyhow::Result<Vec<GatewayNode>> {
    let mut out = Vec::new();
    for s in compose
        .services
        .values()
        .filter(|s| s.binary() == Some(GATEWAY))
    {
        ensure!(
            s.replicas == 1,
            "{}: a gateway node is one container",
            s.name
        );
        let id = scalar(&config_value(s, "gateway.id", Some("GATEWAY_ID"))?)
            .with_context(|| format!("{}: gateway.id is not set", s.name))?;
        let labels = string_list(
            Some(&config_value(
                s,
                "apim.sync_runtime_artifacts.gateway.gateway_labels",
                None,
            )?),
            "gateway_labels",
        )?;
        out.push(GatewayNode {
            service: s.name.clone(),
            id,
            labels,
        });
    }
    Ok(out)
}
