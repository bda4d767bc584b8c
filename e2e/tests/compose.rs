//! compose.yaml, run as processes: the checks and the walkthrough.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use artisync_cli::client::{GatewayAdminClient, PublisherClient};
use artisync_e2e::compose::*;
use artisync_e2e::{TestEnv, eventually, tail};

// ---------------------------------------------------------------------------
// The tests

fn read_project() -> anyhow::Result<(Compose, String)> {
    read_project_with(|env_text| env_text)
}

/// The project with `.env` made from `.env.example` as the README says:
/// every change-me token replaced by a random one (the services refuse
/// the placeholders).
fn read_project_with_own_tokens() -> anyhow::Result<(Compose, String)> {
    read_project_with(|env_text| {
        env_text
            .lines()
            .map(|line| match line.split_once('=') {
                Some((var, value)) if var.contains("TOKEN") && value.starts_with("change-me") => {
                    format!("{var}={}", artisync_cli::cluster::random_token())
                }
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn read_project_with(env: impl FnOnce(String) -> String) -> anyhow::Result<(Compose, String)> {
    let root = repo_root();
    let compose_text =
        std::fs::read_to_string(root.join("compose.yaml")).context("compose.yaml")?;
    let env_text = std::fs::read_to_string(root.join(".env.example")).context(".env.example")?;
    Ok((load_compose(&compose_text, &env(env_text))?, compose_text))
}

/// Starts the first instance of `service` from a (mutated) compose model and
/// expects it to refuse its configuration: exit code 2, naming `key`.
async fn expect_refused(
    compose: Compose,
    env: &TestEnv,
    service: &str,
    key: &str,
) -> anyhow::Result<()> {
    let topology = Topology::new(compose, env, env.work_dir.join(format!("refused-{key}")))?;
    let instance = *topology
        .instances_of(service)
        .first()
        .with_context(|| format!("no instance of {service}"))?;
    let service = topology.service(service)?;
    let mut p = topology.spawn(instance, service)?;
    let status = p.wait(Duration::from_secs(30)).await?;
    let log = p.log();
    ensure!(
        status.code() == Some(2),
        "{} with a renamed {key}: exit status {status}, not 2; log:\n{log}",
        instance.name
    );
    ensure!(
        log.contains(key),
        "{} with a renamed {key}: the message does not name it:\n{log}",
        instance.name
    );
    Ok(())
}

/// Copies a config file mounted by `service`, with `from` replaced by `to`,
/// and mounts the copy instead.
fn mutate_config(
    compose: &mut Compose,
    dir: &Path,
    service: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<()> {
    let s = compose.services.get_mut(service).context("service")?;
    let mount = s
        .mounts
        .iter_mut()
        .find(|m| m.source.is_some() && s.argv.contains(&m.target))
        .context("config mount")?;
    let source = repo_root().join(mount.source.as_ref().context("bind mount")?);
    let text = std::fs::read_to_string(&source)?;
    ensure!(text.contains(from), "{} has no {from:?}", source.display());
    let copy = dir.join(format!("mutated-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&copy, text.replacen(from, to, 1))?;
    mount.source = Some(copy);
    Ok(())
}

#[test]
fn compose_file_is_consistent() -> anyhow::Result<()> {
    let (compose, compose_text) = read_project()?;
    check_static(&compose, &compose_text)?;

    // The topology the README promises.
    let gws = gateways(&compose)?;
    let on = |label: &str| {
        gws.iter()
            .filter(|g| g.labels == [label.to_owned()])
            .count()
    };
    assert_eq!(on(PROD), 2, "two gateways on {PROD}");
    assert_eq!(on(LABEL1), 1, "one gateway on {LABEL1}");
    assert_eq!(gws.len(), 3);
    let ids: BTreeSet<&str> = gws.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "gateway ids are unique");
    let tm = compose
        .services
        .values()
        .filter(|s| s.binary() == Some(TRAFFIC_MANAGER))
        .map(|s| s.replicas)
        .sum::<usize>();
    assert_eq!(tm, 2, "two traffic-manager replicas");
    // Each gateway keeps its cache in a named volume of its own.
    let mut caches = BTreeSet::new();
    for g in &gws {
        let s = &compose.services[&g.service];
        let cache_dir = scalar(&config_value(s, "gateway.cache_dir", None)?)
            .unwrap_or_else(|| "/var/lib/artisync/gateway".into());
        let volume = s
            .mounts
            .iter()
            .find(|m| m.target == cache_dir)
            .and_then(|m| m.volume.clone())
            .with_context(|| format!("{}: no named volume at {cache_dir}", g.service))?;
        assert!(caches.insert(volume), "{}: cache volume shared", g.service);
    }
    // Publisher and gateways agree on the exchange.
    let publisher = compose
        .services
        .values()
        .find(|s| s.binary() == Some(PUBLISHER))
        .context("no publisher service")?;
    let exchange = |s: &Service, key| -> anyhow::Result<String> {
        Ok(scalar(&config_value(s, key, None)?).unwrap_or_else(|| "artisync.deployments".into()))
    };
    let published_to = exchange(publisher, "amqp.exchange")?;
    for g in &gws {
        assert_eq!(
            exchange(&compose.services[&g.service], "gateway.exchange")?,
            published_to,
            "{} listens on another exchange than the publisher's",
            g.service
        );
    }

    // The check itself catches a misspelled alias.
    let mut broken = compose.clone();
    let gw = broken.services.get_mut(&gws[0].service).context("gw")?;
    let token = gw
        .environment
        .remove("GATEWAY_ADMIN_TOKEN")
        .context("GATEWAY_ADMIN_TOKEN")?;
    gw.environment.insert("GATEWAY_ADMIN_TOKN".into(), token);
    let err = check_static(&broken, &compose_text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("GATEWAY_ADMIN_TOKN"), "{err}");
    Ok(())
}

#[tokio::test]
async fn compose_topology_runs_as_processes() -> anyhow::Result<()> {
    let started = Instant::now();
    let (compose, _) = read_project_with_own_tokens()?;
    let env = TestEnv::new().await?;
    let gws = gateways(&compose)?;
    for g in &gws {
        // Registers the node's queue for clean-up.
        env.gateway(&g.id, &[])?;
    }

    // The project as compose.yaml describes it.
    let topology = Topology::new(compose.clone(), &env, env.work_dir.join("project"))?;
    let cluster = up(&topology).await?;
    let result = exercise(&topology, &cluster, &gws).await;
    if result.is_err() {
        for p in &cluster.procs {
            eprintln!("--- {} ---\n{}", p.name, tail(&p.log(), 40));
        }
    }
    cluster.stop().await;
    result?;

    // Proof that a rename fails this test: the same launch path with one
    // renamed config key or environment variable is refused.
    let gw = gws
        .iter()
        .find(|g| g.labels == [PROD.to_owned()])
        .context("a PROD gateway")?;
    let mut m = compose.clone();
    mutate_config(
        &mut m,
        &env.work_dir,
        &gw.service,
        "admin_listen =",
        "admin_listen_address =",
    )?;
    expect_refused(m, &env, &gw.service, "admin_listen_address").await?;
    let mut m = compose.clone();
    let s = m.services.get_mut(&gw.service).context("gw")?;
    let v = s
        .environment
        .remove("GATEWAY_ADMIN_TOKEN")
        .context("token")?;
    s.environment.insert("GATEWAY_ADMIN_TOKN".into(), v);
    expect_refused(m, &env, &gw.service, "gateway.admin_token").await?;
    let mut m = compose.clone();
    let tm = m
        .services
        .values_mut()
        .find(|s| s.binary() == Some(TRAFFIC_MANAGER))
        .context("traffic manager")?;
    let v = tm
        .environment
        .remove("ARTISYNC_TRAFFIC_MANAGER__TOKENS")
        .context("tokens")?;
    tm.environment
        .insert("ARTISYNC_TRAFFIC_MANAGER__TOKEN".into(), v);
    let tm = tm.name.clone();
    expect_refused(m, &env, &tm, "traffic_manager.token").await?;
    let mut m = compose.clone();
    let publisher = m
        .services
        .values()
        .find(|s| s.binary() == Some(PUBLISHER))
        .context("publisher")?
        .name
        .clone();
    mutate_config(
        &mut m,
        &env.work_dir,
        &publisher,
        "[publisher]",
        "[publsher]",
    )?;
    expect_refused(m, &env, &publisher, "publsher").await?;
    // .env.example copied as it is: its change-me tokens are refused.
    let (example, _) = read_project()?;
    expect_refused(example.clone(), &env, &publisher, "publisher.tokens[0]").await?;
    expect_refused(example, &env, &gw.service, "gateway.traffic_manager_token").await?;

    eprintln!("compose topology test took {:?}", started.elapsed());
    Ok(())
}

/// Publish -> deploy to PROD -> traffic through both PROD gateways, 404 on
/// the Label1 gateway, with the tokens from `.env`.
async fn exercise(
    topology: &Topology,
    cluster: &Running,
    gws: &[GatewayNode],
) -> anyhow::Result<()> {
    let vars = &topology.compose.vars;
    let publisher_token = vars
        .get("PUBLISHER_TOKEN")
        .context(".env: PUBLISHER_TOKEN")?;
    let admin_token = vars
        .get("GATEWAY_ADMIN_TOKEN")
        .context(".env: GATEWAY_ADMIN_TOKEN")?;
    // Through the published ports, as a user on the host would.
    let published = |service: &str, container: u16| -> anyhow::Result<String> {
        let s = topology.service(service)?;
        let port = s
            .ports
            .iter()
            .find(|p| p.container == container)
            .with_context(|| format!("{service} does not publish {container}"))?;
        ensure!(
            port.host.is_some(),
            "{service}: port {container} has no host port"
        );
        let instance = topology.instance(service)?;
        Ok(format!(
            "http://127.0.0.1:{}",
            instance.local_port(container)?
        ))
    };
    let publisher_service = topology
        .compose
        .services
        .values()
        .find(|s| s.binary() == Some(PUBLISHER))
        .context("publisher")?;
    let publisher =
        PublisherClient::new(&published(&publisher_service.name, 9400)?, publisher_token);

    let xml = std::fs::read_to_string(repo_root().join("config/sample-api.xml"))?;
    let created = publisher.create_api(&xml).await?;
    ensure!(created.status.as_u16() == 201, "create: {}", created.text);
    let id = created.body["id"].as_str().context("id")?.to_owned();
    let deployed = publisher.deploy(&id, &[PROD], None).await?;
    ensure!(deployed.status.is_success(), "deploy: {}", deployed.text);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    for g in gws {
        let s = topology.service(&g.service)?;
        let admin_port = s
            .ports
            .iter()
            .find(|p| p.container != 8280)
            .context("admin port")?;
        ensure!(
            admin_port.host_ip.as_deref() == Some("127.0.0.1"),
            "{}: the admin API is published on 127.0.0.1 only",
            g.service
        );
        let base = published(&g.service, 8280)?;
        let url = format!("{base}/hello/1.0.0/greet/World");
        if g.labels.iter().any(|l| l == PROD) {
            let admin =
                GatewayAdminClient::new(&published(&g.service, admin_port.container)?, admin_token);
            let answer = admin
                .wait_for_revision(&id, 1, Duration::from_secs(30))
                .await?;
            ensure!(
                answer.status.is_success(),
                "{} did not apply the API: {} {}\n{}",
                g.service,
                answer.status,
                answer.text,
                tail(&cluster.log(&g.service), 40)
            );
            let r = http.get(&url).send().await?;
            let status = r.status().as_u16();
            let body = r.text().await?;
            ensure!(status == 200, "{}: {status} {body}", g.service);
            ensure!(body.contains("Hello, World!"), "{}: {body}", g.service);
            // The artifact landed in the node's own cache volume.
            let instance = topology.instance(&g.service)?;
            let volume = s
                .mounts
                .iter()
                .find(|m| m.volume.is_some())
                .context("cache volume")?;
            let dir = instance.root.join(volume.target.trim_start_matches('/'));
            ensure!(
                std::fs::read_dir(&dir)?.next().is_some(),
                "{}: nothing cached in {}",
                g.service,
                dir.display()
            );
        } else {
            let status = http.get(&url).send().await?.status().as_u16();
            ensure!(
                status == 404,
                "{} serves {LABEL1} only: {status}",
                g.service
            );
        }
    }

    // Every node reports to the publisher (through both traffic manager
    // replicas).
    let ids: BTreeSet<String> = gws.iter().map(|g| g.id.clone()).collect();
    eventually(
        "every gateway to report",
        Duration::from_secs(30),
        || async {
            let answer = publisher.0.get("/api/v1/gateways").await?;
            let seen: BTreeSet<String> = answer.body["gateways"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g["nodeId"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Ok(ids.is_subset(&seen).then_some(()))
        },
    )
    .await?;
    let tms: BTreeSet<usize> = topology
        .picks
        .iter()
        .filter(|((from, _), _)| gws.iter().any(|g| &g.service == from))
        .map(|(_, replica)| *replica)
        .collect();
    ensure!(
        tms.len() >= 2,
        "the gateways use both traffic manager replicas"
    );
    Ok(())
}
