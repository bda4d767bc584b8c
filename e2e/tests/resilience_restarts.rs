//! Never lose a change (issue 3), across process deaths: a gateway killed
//! while changes are published, a publisher killed before its relay
//! published, gateways started while the traffic manager is down, and a
//! gateway restarted with everything upstream unreachable.
//!
//! Faults are real: SIGKILL, and TCP proxies that cut the connections of a
//! node to RabbitMQ or the traffic manager.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use artisync_e2e::fault::TcpFaultProxy;
use artisync_e2e::{TestCluster, TestEnv, eventually, mock_api, tail};

const PROD: &str = "Production and Sandbox";
const LABEL1: &str = "Label1";

fn tm_addr(c_port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], c_port))
}

/// Creates a new revision of `id` tagged `tag` and deploys it to `labels`;
/// returns the new revision.
async fn update_and_deploy(
    c: &TestCluster,
    id: &str,
    name: &str,
    context: &str,
    tag: &str,
    labels: &[&str],
) -> anyhow::Result<u64> {
    let updated = c
        .publisher
        .update_api(id, &mock_api(name, context, tag))
        .await?;
    ensure!(
        updated.status.as_u16() == 201,
        "update answered {}: {}",
        updated.status,
        updated.text
    );
    let revision = updated.body["revision"]
        .as_u64()
        .context("no revision in the update answer")?;
    let deployed = c.publisher.deploy(id, labels, None).await?;
    ensure!(
        deployed.status.is_success(),
        "deploy answered {}: {}",
        deployed.status,
        deployed.text
    );
    Ok(revision)
}

/// Only what a node serves (status DEPLOYED), as API id -> revision.
fn deployed_only(applied: &BTreeMap<String, (u64, String)>) -> BTreeMap<String, u64> {
    applied
        .iter()
        .filter(|(_, (_, status))| status == "DEPLOYED")
        .map(|(id, (revision, _))| (id.clone(), *revision))
        .collect()
}

/// The data plane answers `context/hello` with the tag of `revision`.
async fn serves(c: &TestCluster, gw: &str, context: &str, tag: &str) -> anyhow::Result<()> {
    let (status, body) = c.call(gw, &format!("{context}/hello")).await?;
    ensure!(
        status == 200 && body.contains(&format!("\"tag\": \"{tag}\"")),
        "{gw} {context}/hello answered {status}: {body} (expected tag {tag})"
    );
    Ok(())
}

async fn wait_cached(
    c: &TestCluster,
    gw: &str,
    expected: &BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    eventually(
        "the disk cache manifest to hold the applied state",
        Duration::from_secs(10),
        || async { Ok((c.cache_manifest(gw)? == *expected).then_some(())) },
    )
    .await
}

#[tokio::test]
async fn a_killed_gateway_converges_to_exactly_the_desired_state_undeploys_included()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut c = env
        .start(vec![
            env.gateway("gw-live", &[PROD])?,
            env.gateway("gw-k", &[PROD])?,
        ])
        .await?;
    let apis = [
        ("Alpha", "/alpha"),
        ("Bravo", "/bravo"),
        ("Charlie", "/charlie"),
        ("Delta", "/delta"),
    ];
    let mut ids = BTreeMap::new();
    for (name, context) in apis {
        let id = c.publish(&mock_api(name, context, "r1"), &[PROD]).await?;
        for gw in ["gw-live", "gw-k"] {
            c.wait_applied(gw, &id, 1).await?;
        }
        ids.insert(name, id);
    }
    let (a, b, cc, d) = (&ids["Alpha"], &ids["Bravo"], &ids["Charlie"], &ids["Delta"]);

    c.cluster.kill("gw-k").await?;

    // 20 changes while it is down: every call below makes the publisher
    // emit an event or a revision.
    let mut changes = 0;
    update_and_deploy(&c, a, "Alpha", "/alpha", "r2", &[PROD]).await?; // 1, 2
    changes += 2;
    c.publisher
        .undeploy(b, PROD)
        .await?
        .expect("DELETE", "undeploy")?; // 3
    changes += 1;
    let e = c.publish(&mock_api("Echo", "/echo", "r1"), &[PROD]).await?; // 4, 5
    changes += 2;
    update_and_deploy(&c, cc, "Charlie", "/charlie", "r2", &[PROD]).await?; // 6, 7
    changes += 2;
    update_and_deploy(&c, a, "Alpha", "/alpha", "r3", &[PROD]).await?; // 8, 9
    changes += 2;
    let f = c
        .publish(&mock_api("Foxtrot", "/foxtrot", "r1"), &[PROD])
        .await?; // 10, 11
    changes += 2;
    // Deployed and undeployed while the node was away: must not appear.
    c.publisher
        .undeploy(&e, PROD)
        .await?
        .expect("DELETE", "undeploy")?; // 12
    changes += 1;
    c.publisher
        .deploy(b, &[PROD], None)
        .await?
        .expect("POST", "deploy")?; // 13
    changes += 1;
    update_and_deploy(&c, b, "Bravo", "/bravo", "r2", &[PROD]).await?; // 14, 15
    changes += 2;
    let deleted = c.publisher.delete_api(d).await?; // 16
    ensure!(deleted.status.as_u16() == 204, "{}", deleted.text);
    changes += 1;
    update_and_deploy(&c, &f, "Foxtrot", "/foxtrot", "r2", &[PROD]).await?; // 17, 18
    changes += 2;
    c.publisher
        .undeploy(cc, PROD)
        .await?
        .expect("DELETE", "undeploy")?; // 19
    changes += 1;
    // A new revision that is not deployed: the node must not run it.
    let r4 = c
        .publisher
        .update_api(a, &mock_api("Alpha", "/alpha", "r4"))
        .await?; // 20
    ensure!(r4.status.as_u16() == 201, "{}", r4.text);
    changes += 1;
    // And an API for a label the node does not serve.
    let g = c
        .publish(&mock_api("Golf", "/golf", "r1"), &[LABEL1])
        .await?;
    assert_eq!(changes, 20);

    let desired = c.desired_for(&[PROD]).await?;
    assert_eq!(
        desired,
        BTreeMap::from([(a.clone(), 3), (b.clone(), 2), (f.clone(), 2)]),
        "the publisher's view"
    );
    // The live node got there by events.
    eventually(
        "the live gateway to converge",
        Duration::from_secs(20),
        || async {
            let applied = c.applied_on("gw-live").await?;
            Ok(
                (deployed_only(&applied) == desired && applied.len() == desired.len())
                    .then_some(()),
            )
        },
    )
    .await?;

    c.cluster.restart_process("gw-k")?;
    c.cluster
        .wait_ready("gw-k", Duration::from_secs(30))
        .await?;
    // Sync mode: ready means the start-up reconcile is done, removals
    // included.
    let applied = c.applied_on("gw-k").await?;
    let log = c.cluster.log("gw-k");
    let about_extra: Vec<&str> = log
        .lines()
        .filter(|l| {
            applied
                .keys()
                .filter(|id| !desired.contains_key(*id))
                .any(|id| l.contains(id.as_str()))
        })
        .collect();
    assert_eq!(
        deployed_only(&applied),
        desired,
        "gw-k at readiness: {applied:?}\n{}",
        about_extra.join("\n")
    );
    assert_eq!(
        applied.len(),
        desired.len(),
        "nothing else is known: {applied:?}\n{}",
        about_extra.join("\n")
    );
    serves(&c, "gw-k", "/alpha", "r3").await?;
    serves(&c, "gw-k", "/bravo", "r2").await?;
    serves(&c, "gw-k", "/foxtrot", "r2").await?;
    for gone in ["/charlie", "/delta", "/echo", "/golf"] {
        let (status, body) = c.call("gw-k", &format!("{gone}/hello")).await?;
        assert_eq!(status, 404, "{gone}: {body}");
    }
    assert_eq!(c.applied_revision("gw-k", &g).await?, None);

    // The 20 queued events are stale by now: handling them changes nothing.
    let marker = c
        .publish(&mock_api("Marker", "/marker", "m"), &[PROD])
        .await?;
    c.wait_applied("gw-k", &marker, 1).await?;
    eventually(
        "gw-k's queue to be drained",
        Duration::from_secs(10),
        || async { Ok((env.queue_depth("gw-k").await? == 0).then_some(())) },
    )
    .await?;
    let mut with_marker = desired.clone();
    with_marker.insert(marker.clone(), 1);
    let applied = c.applied_on("gw-k").await?;
    assert_eq!(deployed_only(&applied), with_marker, "{applied:?}");
    assert_eq!(applied.len(), with_marker.len(), "{applied:?}");
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_event_committed_before_the_publisher_died_is_delivered_after_its_restart()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut gw = env.gateway("gw-o", &[PROD])?;
    // Only the event can bring the API: no periodic reconcile in the test.
    gw.reconcile_interval_ms = 600_000;
    let mut spec = env.spec(vec![gw])?;
    let broker = TcpFaultProxy::start(env.amqp_addr()?).await?;
    broker.cut();
    spec.publisher_amqp_url = Some(env.amqp_url_through(broker.addr)?);
    let mut c = env.start_spec(spec, &["gw-o"]).await?;
    eventually("gw-o to be subscribed", Duration::from_secs(10), || async {
        let (_, r) = c.readiness("gw-o").await?;
        Ok((r["amqpConnected"] == true).then_some(()))
    })
    .await?;

    // The publisher answers 2xx although its relay cannot publish.
    let id = c
        .publish(&mock_api("Outbox", "/outbox", "r1"), &[PROD])
        .await?;
    let pool = env.db.pool().await?;
    let unsent = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&pool)
            .await?;
        anyhow::Ok(n)
    };
    assert!(unsent().await? >= 1, "the deploy event waits in the outbox");
    c.cluster.kill("publisher").await?;
    assert!(
        unsent().await? >= 1,
        "the event is still unsent when the publisher dies"
    );
    assert_eq!(c.applied_revision("gw-o", &id).await?, None);

    broker.heal();
    c.cluster.restart_process("publisher")?;
    c.cluster
        .wait_ready("publisher", Duration::from_secs(30))
        .await?;
    c.wait_applied("gw-o", &id, 1).await?;
    serves(&c, "gw-o", "/outbox", "r1").await?;
    eventually(
        "the outbox to be drained",
        Duration::from_secs(10),
        || async { Ok((unsent().await? == 0).then_some(())) },
    )
    .await?;
    // It came by the event: the node's only reconcile ran at start-up.
    assert_eq!(
        c.metric("gw-o", "artisync_gateway_reconcile_runs_total")
            .await?,
        1.0
    );
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn traffic_manager_down_at_start_async_serves_the_cache_and_converges() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let mut gw = env.gateway("gw-a", &[PROD])?;
    gw.mode = "async".into();
    gw.reconcile_interval_ms = 1_000;
    let mut spec = env.spec(vec![gw])?;
    let tm = TcpFaultProxy::start(tm_addr(spec.traffic_manager_port)).await?;
    spec.gateways[0].traffic_manager_url = Some(format!("http://{}", tm.addr));
    let mut c = env.start_spec(spec, &["gw-a"]).await?;
    let a = c
        .publish(&mock_api("Cached", "/cached", "r1"), &[PROD])
        .await?;
    c.wait_applied("gw-a", &a, 1).await?;
    wait_cached(&c, "gw-a", &BTreeMap::from([(a.clone(), 1)])).await?;

    c.cluster.kill("gw-a").await?;
    tm.cut();
    // Published while the node is down and its traffic manager unreachable.
    update_and_deploy(&c, &a, "Cached", "/cached", "r2", &[PROD]).await?;
    let b = c
        .publish(&mock_api("Later", "/later", "r1"), &[PROD])
        .await?;

    let restarted = Instant::now();
    c.cluster.restart_process("gw-a")?;
    // Async: ready at once, serving the cache.
    c.cluster
        .wait_ready("gw-a", Duration::from_secs(10))
        .await?;
    serves(&c, "gw-a", "/cached", "r1").await?;
    assert!(
        restarted.elapsed() < Duration::from_secs(5),
        "serving the cache took {:?}",
        restarted.elapsed()
    );
    let (status, readiness) = c.readiness("gw-a").await?;
    assert_eq!(status, 200, "{readiness}");
    assert_eq!(c.applied_revision("gw-a", &a).await?, Some(1));
    assert_eq!(c.applied_revision("gw-a", &b).await?, None);

    // The data plane keeps serving while the node fails to reach upstream.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/cached/hello", c.gateway_url("gw-a")?);
    let hammer = tokio::spawn({
        let (stop, sent) = (stop.clone(), sent.clone());
        async move {
            let http = reqwest::Client::new();
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = http.get(&url).send().await;
                answers.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        }
    });
    // Several load attempts fail meanwhile, and traffic is served.
    eventually(
        "gw-a to try the traffic manager a few times while serving",
        Duration::from_secs(10),
        || async { Ok((tm.refused() >= 3 && sent.load(Ordering::Relaxed) >= 10).then_some(())) },
    )
    .await?;
    assert_eq!(c.applied_revision("gw-a", &a).await?, Some(1));

    tm.heal();
    let healed = Instant::now();
    c.wait_applied("gw-a", &a, 2).await?;
    c.wait_applied("gw-a", &b, 1).await?;
    let converged = healed.elapsed();
    stop.store(true, Ordering::Relaxed);
    let answers = hammer.await?;
    assert!(answers.len() >= 10, "{} requests", answers.len());
    assert!(
        answers.iter().all(|s| *s == 200),
        "the data plane failed while upstream was down: {answers:?}"
    );
    assert!(
        converged < Duration::from_secs(8),
        "converged {converged:?} after the traffic manager came back"
    );
    serves(&c, "gw-a", "/cached", "r2").await?;
    serves(&c, "gw-a", "/later", "r1").await?;
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn traffic_manager_down_at_start_sync_is_unready_until_it_is_back_or_retries_are_spent()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    // Waits long enough for the traffic manager to come back.
    let mut waiting = env.gateway("gw-wait", &[PROD])?;
    waiting.retry_duration_ms = 400;
    waiting.max_retry_count = 8;
    // Gives up after 200 + 400 ms.
    let mut giving_up = env.gateway("gw-giveup", &[PROD])?;
    giving_up.retry_duration_ms = 200;
    giving_up.max_retry_count = 2;
    giving_up.reconcile_interval_ms = 1_000;
    let mut spec = env.spec(vec![waiting, giving_up])?;
    let tm_wait = TcpFaultProxy::start(tm_addr(spec.traffic_manager_port)).await?;
    let tm_giveup = TcpFaultProxy::start(tm_addr(spec.traffic_manager_port)).await?;
    spec.gateways[0].traffic_manager_url = Some(format!("http://{}", tm_wait.addr));
    spec.gateways[1].traffic_manager_url = Some(format!("http://{}", tm_giveup.addr));
    let mut c = env.start_spec(spec, &[]).await?;
    let id = c.publish(&mock_api("Sync", "/sync", "r1"), &[PROD]).await?;

    tm_wait.cut();
    tm_giveup.cut();
    c.cluster.spawn_process("gw-wait")?;
    c.cluster.spawn_process("gw-giveup")?;

    // gw-giveup: 503 while loading, then ready with what it has (nothing),
    // saying why.
    let saw_loading = Cell::new(false);
    let unexpected = RefCell::new(Vec::new());
    let readiness = eventually(
        "gw-giveup to give up and become ready",
        Duration::from_secs(15),
        || {
            let (c, saw_loading, unexpected) = (&c, &saw_loading, &unexpected);
            async move {
                let Ok((status, r)) = c.readiness("gw-giveup").await else {
                    return Ok(None);
                };
                if status == 503 {
                    // Unready only while loading (a failure here would be
                    // retried by `eventually`: record it instead).
                    if r["startup"]["phase"] == "loading" {
                        saw_loading.set(true);
                    } else {
                        unexpected.borrow_mut().push(r);
                    }
                    return Ok(None);
                }
                Ok((status == 200).then_some(r))
            }
        },
    )
    .await?;
    assert!(
        unexpected.borrow().is_empty(),
        "unready but not loading: {:?}",
        unexpected.borrow()
    );
    assert!(
        saw_loading.get(),
        "gw-giveup was never seen unready while loading"
    );
    assert_eq!(readiness["startup"]["phase"], "gaveUp", "{readiness}");
    let message = readiness["startup"]["message"].as_str().unwrap_or("");
    assert!(message.contains("retries spent"), "{readiness}");
    assert!(
        c.cluster
            .log("gw-giveup")
            .contains("retries spent loading the desired state"),
        "the log says so"
    );
    let log = c.cluster.log("gw-giveup");
    assert_eq!(
        log.matches("cannot load the desired state yet").count(),
        2,
        "1 attempt + 2 retries:\n{}",
        tail(&log, 30)
    );
    assert_eq!(c.applied_revision("gw-giveup", &id).await?, None);

    // gw-wait is still unready, after several failed attempts.
    eventually(
        "gw-wait to try a few times",
        Duration::from_secs(10),
        || async { Ok((tm_wait.refused() >= 3).then_some(())) },
    )
    .await?;
    let (status, r) = c.readiness("gw-wait").await?;
    assert_eq!(status, 503, "{r}");
    assert_eq!(r["startup"]["phase"], "loading", "{r}");

    tm_wait.heal();
    tm_giveup.heal();
    eventually(
        "gw-wait to become ready",
        Duration::from_secs(15),
        || async { Ok((c.readiness("gw-wait").await?.0 == 200).then_some(())) },
    )
    .await?;
    // Sync: ready means deployed.
    assert_eq!(c.applied_revision("gw-wait", &id).await?, Some(1));
    let (_, r) = c.readiness("gw-wait").await?;
    assert_eq!(r["startup"]["phase"], "done", "{r}");
    serves(&c, "gw-wait", "/sync", "r1").await?;
    // gw-giveup catches up at its next reconcile.
    c.wait_applied("gw-giveup", &id, 1).await?;
    eventually(
        "gw-giveup's start-up to be done",
        Duration::from_secs(10),
        || async {
            let (_, r) = c.readiness("gw-giveup").await?;
            Ok((r["startup"]["phase"] == "done").then_some(()))
        },
    )
    .await?;
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_gateway_restarted_with_everything_upstream_down_serves_its_last_known_good_state()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut gw = env.gateway("gw-c", &[PROD])?;
    gw.reconcile_interval_ms = 1_000;
    let mut spec = env.spec(vec![gw])?;
    let tm = TcpFaultProxy::start(tm_addr(spec.traffic_manager_port)).await?;
    let broker = TcpFaultProxy::start(env.amqp_addr()?).await?;
    spec.gateways[0].traffic_manager_url = Some(format!("http://{}", tm.addr));
    spec.gateways[0].amqp_url = Some(env.amqp_url_through(broker.addr)?);
    let mut c = env.start_spec(spec, &["gw-c"]).await?;

    let a = c.publish(&mock_api("Kept", "/kept", "r1"), &[PROD]).await?;
    let b = c
        .publish(&mock_api("Newer", "/newer", "r1"), &[PROD])
        .await?;
    let gone = c.publish(&mock_api("Gone", "/gone", "r1"), &[PROD]).await?;
    c.wait_applied("gw-c", &gone, 1).await?;
    update_and_deploy(&c, &b, "Newer", "/newer", "r2", &[PROD]).await?;
    c.publisher
        .undeploy(&gone, PROD)
        .await?
        .expect("DELETE", "undeploy")?;
    c.wait_applied("gw-c", &a, 1).await?;
    c.wait_applied("gw-c", &b, 2).await?;
    eventually("the undeploy", Duration::from_secs(20), || async {
        Ok((c.applied_revision("gw-c", &gone).await?.is_none()).then_some(()))
    })
    .await?;
    let last_good = BTreeMap::from([(a.clone(), 1), (b.clone(), 2)]);
    wait_cached(&c, "gw-c", &last_good).await?;

    // Everything upstream goes: the traffic manager and the broker are cut
    // off, and the processes that talk to the database are killed.
    tm.cut();
    broker.cut();
    c.cluster.kill("traffic-manager").await?;
    c.cluster.kill("publisher").await?;
    c.cluster.kill("gw-c").await?;

    let restarted = Instant::now();
    c.cluster.restart_process("gw-c")?;
    eventually(
        "the restarted gateway to serve",
        Duration::from_secs(10),
        || async {
            Ok(c.call("gw-c", "/kept/hello")
                .await
                .ok()
                .filter(|(s, _)| *s == 200))
        },
    )
    .await?;
    let serving_after = restarted.elapsed();
    serves(&c, "gw-c", "/kept", "r1").await?;
    serves(&c, "gw-c", "/newer", "r2").await?;
    let (status, body) = c.call("gw-c", "/gone/hello").await?;
    assert_eq!(status, 404, "an undeployed API never comes back: {body}");
    let applied = c.applied_on("gw-c").await?;
    assert_eq!(deployed_only(&applied), last_good, "{applied:?}");
    assert_eq!(applied.len(), 2, "{applied:?}");
    assert!(
        serving_after < Duration::from_secs(5),
        "serving from the cache took {serving_after:?}"
    );
    // Sync mode: unready while it tries, then ready with what it has.
    let readiness = eventually(
        "gw-c to give up loading and become ready",
        Duration::from_secs(15),
        || async {
            let (status, r) = c.readiness("gw-c").await?;
            Ok((status == 200).then_some(r))
        },
    )
    .await?;
    assert_eq!(readiness["startup"]["phase"], "gaveUp", "{readiness}");
    assert_eq!(readiness["amqpConnected"], false, "{readiness}");
    assert_eq!(readiness["deployed"], 2, "{readiness}");
    let log = c.cluster.log("gw-c");
    if !log.contains("serving the cached state") {
        bail!("no cache log line:\n{}", tail(&log, 40));
    }

    // Upstream comes back: the node reconnects and stays right.
    c.cluster.restart_process("traffic-manager")?;
    c.cluster
        .wait_ready("traffic-manager", Duration::from_secs(30))
        .await?;
    tm.heal();
    broker.heal();
    eventually(
        "gw-c to reconnect and reconcile",
        Duration::from_secs(20),
        || async {
            let (_, r) = c.readiness("gw-c").await?;
            Ok((r["amqpConnected"] == true && r["startup"]["phase"] == "done").then_some(()))
        },
    )
    .await?;
    let applied = c.applied_on("gw-c").await?;
    assert_eq!(deployed_only(&applied), last_good, "{applied:?}");
    c.stop().await;
    Ok(())
}
