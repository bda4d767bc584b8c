//! Never lose a change (issue 3), through broken connections: a gateway's
//! RabbitMQ connection cut while changes are published, events lost before
//! they reach a node, and a revision the traffic manager cannot serve.
//!
//! Faults are real: TCP proxies that cut a node's connections, a purge of
//! its queue, and an HTTP proxy in front of the traffic manager that
//! answers 500 for one API.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use artisync_e2e::fault::{HttpFaultProxy, TcpFaultProxy};
use artisync_e2e::{TestCluster, TestEnv, eventually, mock_api, tail, too_large_to_inline};
use axum::http::StatusCode;
use serde_json::Value;

const PROD: &str = "Production and Sandbox";

async fn update_and_deploy(
    c: &TestCluster,
    id: &str,
    name: &str,
    context: &str,
    tag: &str,
) -> anyhow::Result<u64> {
    let updated = c
        .publisher
        .update_api(id, &too_large_to_inline(&mock_api(name, context, tag)))
        .await?;
    ensure!(
        updated.status.as_u16() == 201,
        "update answered {}: {}",
        updated.status,
        updated.text
    );
    c.publisher
        .deploy(id, &[PROD], None)
        .await?
        .expect("POST", "deploy")?;
    updated.body["revision"]
        .as_u64()
        .context("no revision in the update answer")
}

async fn serves(c: &TestCluster, gw: &str, context: &str, tag: &str) -> anyhow::Result<()> {
    let (status, body) = c.call(gw, &format!("{context}/hello")).await?;
    ensure!(
        status == 200 && body.contains(&format!("\"tag\": \"{tag}\"")),
        "{gw} {context}/hello answered {status}: {body} (expected tag {tag})"
    );
    Ok(())
}

async fn wait_disconnected(c: &TestCluster, gw: &str) -> anyhow::Result<()> {
    eventually(
        "the node to notice its broker connection is gone",
        Duration::from_secs(10),
        || async {
            let (_, r) = c.readiness(gw).await?;
            Ok((r["amqpConnected"] == false).then_some(()))
        },
    )
    .await
}

/// Waits until `n` events wait in the node's queue, then drops them.
async fn lose_events(env: &TestEnv, gw: &str, n: u32) -> anyhow::Result<()> {
    eventually(
        "the events to reach the node's queue",
        Duration::from_secs(10),
        || async { Ok((env.queue_depth(gw).await? >= n).then_some(())) },
    )
    .await?;
    let purged = env.purge_queue(gw).await?;
    ensure!(purged >= n, "purged {purged} events, expected {n}");
    Ok(())
}

/// Requests `url` every 20 ms until stopped; returns every status (0 for
/// a transport error).
fn hammer(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u16>> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut answers = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let r = http.get(&url).timeout(Duration::from_secs(5)).send().await;
            answers.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answers
    })
}

#[tokio::test]
async fn a_gateway_cut_from_rabbitmq_for_10_s_keeps_serving_and_converges_on_reconnect()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut gw = env.gateway("gw-r", &[PROD])?;
    // No periodic reconcile within the test: only the reconnect repairs.
    gw.reconcile_interval_ms = 600_000;
    let mut spec = env.spec(vec![gw])?;
    let broker = TcpFaultProxy::start(env.amqp_addr()?).await?;
    spec.gateways[0].amqp_url = Some(env.amqp_url_through(broker.addr)?);
    let c = env.start_spec(spec, &["gw-r"]).await?;
    let a = c.publish(&mock_api("Able", "/able", "r1"), &[PROD]).await?;
    let b = c
        .publish(&mock_api("Baker", "/baker", "r1"), &[PROD])
        .await?;
    c.wait_applied("gw-r", &a, 1).await?;
    c.wait_applied("gw-r", &b, 1).await?;
    let reconciles_before = c
        .metric("gw-r", "artisync_gateway_reconcile_runs_total")
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = hammer(
        format!("{}/able/hello", c.gateway_url("gw-r")?),
        stop.clone(),
    );
    let cut_at = Instant::now();
    broker.cut();
    wait_disconnected(&c, "gw-r").await?;

    // Changes while the node is cut off: an update, an undeploy, a new API.
    update_and_deploy(&c, &a, "Able", "/able", "r2").await?;
    c.publisher
        .undeploy(&b, PROD)
        .await?
        .expect("DELETE", "undeploy")?;
    let new = c
        .publish(&mock_api("Charlie", "/charlie", "r1"), &[PROD])
        .await?;
    // The broker kept them for the node; drop them, so that only the
    // reconcile after the reconnect can bring the node up to date.
    lose_events(&env, "gw-r", 3).await?;
    // Nothing reached the node meanwhile.
    assert_eq!(c.applied_revision("gw-r", &a).await?, Some(1));
    assert_eq!(c.applied_revision("gw-r", &b).await?, Some(1));
    assert_eq!(c.applied_revision("gw-r", &new).await?, None);

    // The cut lasts 10 s.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(cut_at.elapsed())).await;
    let healed = Instant::now();
    broker.heal();
    c.wait_applied("gw-r", &a, 2).await?;
    c.wait_applied("gw-r", &new, 1).await?;
    eventually("the undeploy", Duration::from_secs(20), || async {
        Ok((c.applied_revision("gw-r", &b).await?.is_none()).then_some(()))
    })
    .await?;
    let converged = healed.elapsed();
    stop.store(true, Ordering::Relaxed);
    let answers = traffic.await?;

    // The reconnect path did it.
    let (_, r) = c.readiness("gw-r").await?;
    assert_eq!(r["amqpConnected"], true, "{r}");
    let log = c.cluster.log("gw-r");
    assert!(
        log.contains("event subscription re-established; reconciling"),
        "{}",
        tail(&log, 40)
    );
    assert!(
        c.metric("gw-r", "artisync_gateway_reconcile_runs_total")
            .await?
            > reconciles_before
    );
    assert!(
        converged < Duration::from_secs(15),
        "converged {converged:?} after the cut healed"
    );
    serves(&c, "gw-r", "/able", "r2").await?;
    serves(&c, "gw-r", "/charlie", "r1").await?;
    assert_eq!(c.call("gw-r", "/baker/hello").await?.0, 404);

    // The data plane served throughout: no error, and the swap from r1
    // to r2 happened without a gap.
    assert!(answers.len() >= 200, "only {} requests", answers.len());
    assert!(
        answers.iter().all(|s| *s == 200),
        "the data plane failed during the cut: {:?}",
        answers.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_lost_event_is_repaired_by_the_periodic_reconcile() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut gw = env.gateway("gw-p", &[PROD])?;
    let interval = Duration::from_secs(2);
    gw.reconcile_interval_ms = interval.as_millis() as u64;
    let mut spec = env.spec(vec![gw])?;
    let broker = TcpFaultProxy::start(env.amqp_addr()?).await?;
    spec.gateways[0].amqp_url = Some(env.amqp_url_through(broker.addr)?);
    let c = env.start_spec(spec, &["gw-p"]).await?;
    let a = c.publish(&mock_api("Lost", "/lost", "r1"), &[PROD]).await?;
    let b = c
        .publish(&mock_api("Removed", "/removed", "r1"), &[PROD])
        .await?;
    c.wait_applied("gw-p", &a, 1).await?;
    c.wait_applied("gw-p", &b, 1).await?;

    // The events never reach the node: it is cut off while they wait in
    // its queue, and they are purged there.
    broker.cut();
    wait_disconnected(&c, "gw-p").await?;
    update_and_deploy(&c, &a, "Lost", "/lost", "r2").await?;
    c.publisher
        .undeploy(&b, PROD)
        .await?
        .expect("DELETE", "undeploy")?;
    lose_events(&env, "gw-p", 2).await?;
    let lost_at = Instant::now();

    // Still cut off from the broker: no reconnect can help; the periodic
    // reconcile must.
    c.wait_applied("gw-p", &a, 2).await?;
    eventually("the lost undeploy", Duration::from_secs(10), || async {
        Ok((c.applied_revision("gw-p", &b).await?.is_none()).then_some(()))
    })
    .await?;
    let repaired = lost_at.elapsed();
    assert!(
        repaired <= interval + Duration::from_millis(1_500),
        "repaired after {repaired:?}, the reconcile interval is {interval:?}"
    );
    let (_, r) = c.readiness("gw-p").await?;
    assert_eq!(r["amqpConnected"], false, "still cut off: {r}");
    serves(&c, "gw-p", "/lost", "r2").await?;
    assert_eq!(c.call("gw-p", "/removed/hello").await?.0, 404);

    broker.heal();
    eventually("the reconnect", Duration::from_secs(20), || async {
        let (_, r) = c.readiness("gw-p").await?;
        Ok((r["amqpConnected"] == true).then_some(()))
    })
    .await?;
    c.stop().await;
    Ok(())
}

/// One observation of an API in the admin API.
#[derive(Debug, Clone)]
struct Seen {
    status: String,
    attempts: u64,
    next_retry_at: Option<chrono::DateTime<chrono::Utc>>,
    revision: Option<u64>,
    error: Option<String>,
}

fn seen(api: &Value) -> Seen {
    Seen {
        status: api["status"].as_str().unwrap_or("").to_owned(),
        attempts: api["attempts"].as_u64().unwrap_or(0),
        next_retry_at: api["nextRetryAt"]
            .as_str()
            .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok()),
        revision: api["revision"].as_u64(),
        error: api["error"].as_str().map(str::to_owned),
    }
}

#[tokio::test]
async fn a_revision_that_cannot_be_fetched_retries_on_schedule_and_never_replaces_the_good_one()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut gw = env.gateway("gw-f", &[PROD])?;
    let base = Duration::from_millis(300);
    gw.retry_duration_ms = base.as_millis() as u64;
    gw.max_retry_count = 3;
    // No reconcile within the test: the retries are the event's own.
    gw.reconcile_interval_ms = 600_000;
    let mut spec = env.spec(vec![gw])?;
    let tm = HttpFaultProxy::start(&spec.traffic_manager_url()).await?;
    spec.gateways[0].traffic_manager_url = Some(tm.url());
    let c = env.start_spec(spec, &["gw-f"]).await?;
    let id = c
        .publish(&mock_api("Flaky", "/flaky", "r1"), &[PROD])
        .await?;
    c.wait_applied("gw-f", &id, 1).await?;

    let path = format!("runtime-artifacts/{id}");
    tm.fail(&path, StatusCode::INTERNAL_SERVER_ERROR);
    let before = tm.requests(&path).len();
    update_and_deploy(&c, &id, "Flaky", "/flaky", "r2").await?;

    // Watch the admin API, the data plane and readiness until the API is
    // marked failed.
    let observed: RefCell<Vec<Seen>> = RefCell::new(Vec::new());
    let violations: RefCell<Vec<String>> = RefCell::new(Vec::new());
    let failed = eventually(
        "the API to be marked failed",
        Duration::from_secs(20),
        || {
            let (c, id, observed, violations) = (&c, &id, &observed, &violations);
            async move {
                let apis = c.admin_apis("gw-f").await?;
                let api = apis["apis"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["apiId"] == id.as_str())
                    .context("the API is listed")?;
                let now = seen(api);
                observed.borrow_mut().push(now.clone());
                // The previous revision keeps serving, and the node stays
                // ready: one bad API never takes it out of rotation.
                if let Err(e) = serves(c, "gw-f", "/flaky", "r1").await {
                    violations.borrow_mut().push(format!("{e:#}"));
                }
                match c.readiness("gw-f").await {
                    Ok((200, _)) => {}
                    Ok((status, r)) => violations
                        .borrow_mut()
                        .push(format!("gw-f turned unready ({status}) while {now:?}: {r}")),
                    Err(e) => violations.borrow_mut().push(format!("{e:#}")),
                }
                Ok((now.status == "FAILED").then_some(now))
            }
        },
    )
    .await?;
    let observed = observed.into_inner();
    let violations = violations.into_inner();
    assert!(violations.is_empty(), "{violations:#?}");

    assert_eq!(failed.attempts, 4, "1 attempt + 3 retries: {failed:?}");
    assert_eq!(failed.next_retry_at, None, "{failed:?}");
    assert_eq!(failed.revision, Some(1), "the good revision stays");
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains("500"), "{error}");

    let retrying: Vec<&Seen> = observed.iter().filter(|s| s.status == "RETRYING").collect();
    assert!(!retrying.is_empty(), "never seen RETRYING: {observed:?}");
    for s in &retrying {
        assert!((1..=3).contains(&s.attempts), "{s:?}");
        assert!(s.next_retry_at.is_some(), "{s:?}");
        assert_eq!(s.revision, Some(1), "{s:?}");
        assert!(
            s.error.as_deref().is_some_and(|e| e.contains("500")),
            "{s:?}"
        );
    }
    // Attempts only go up.
    assert!(
        observed
            .windows(2)
            .all(|w| w[0].status != "RETRYING" || w[1].attempts >= w[0].attempts),
        "{observed:?}"
    );

    // The proxied requests: 1 attempt + 3 retries, spaced 300, 600 and
    // 1200 ms (late is tolerated a little, early never).
    let failing: Vec<_> = tm
        .requests(&path)
        .into_iter()
        .skip(before)
        .filter(|r| r.injected == Some(500))
        .collect();
    assert_eq!(failing.len(), 4, "{failing:?}");
    for (k, pair) in failing.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let expected = base * 2u32.pow(k as u32);
        assert!(
            gap >= expected,
            "retry {} came after {gap:?}, before its delay of {expected:?}",
            k + 1
        );
        assert!(
            gap < expected + Duration::from_millis(700),
            "retry {} came after {gap:?}, its delay is {expected:?}",
            k + 1
        );
    }
    // nextRetryAt announced when each retry would come.
    for s in &retrying {
        let next = s.next_retry_at.context("nextRetryAt")?;
        let retry = &failing[s.attempts as usize];
        let early = next - retry.wall;
        assert!(
            early <= chrono::Duration::milliseconds(5),
            "attempt {} announced {next}, the retry came at {} ({early} early)",
            s.attempts,
            retry.wall
        );
        assert!(
            retry.wall - next < chrono::Duration::milliseconds(700),
            "attempt {} announced {next}, the retry came at {}",
            s.attempts,
            retry.wall
        );
    }

    // The publisher shows the failure on this node.
    let status = eventually(
        "the publisher to show the failure",
        Duration::from_secs(10),
        || async {
            let status = c.api_status(&id).await?;
            let node = status["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["nodeId"] == "gw-f")
                .cloned();
            Ok(node.filter(|n| n["status"] == "FAILED"))
        },
    )
    .await?;
    assert_eq!(status["appliedRevision"], 1, "{status}");
    assert_eq!(status["desiredRevision"], 2, "{status}");
    assert_eq!(status["inSync"], false, "{status}");
    assert_eq!(status["attempts"], 4, "{status}");
    assert!(
        status["error"].as_str().is_some_and(|e| e.contains("500")),
        "{status}"
    );

    // No more attempts once failed (the next reconcile would try again).
    let attempts_when_failed = tm.requests(&path).len();
    serves(&c, "gw-f", "/flaky", "r1").await?;

    // A later good revision deploys.
    tm.clear();
    update_and_deploy(&c, &id, "Flaky", "/flaky", "r3").await?;
    c.wait_applied("gw-f", &id, 3).await?;
    serves(&c, "gw-f", "/flaky", "r3").await?;
    assert_eq!(
        tm.requests(&path).len(),
        attempts_when_failed + 1,
        "one fetch for the good revision, no stray retries"
    );
    let apis = c.admin_apis("gw-f").await?;
    let api = seen(
        apis["apis"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["apiId"] == id.as_str())
            .context("listed")?,
    );
    assert_eq!(api.status, "DEPLOYED", "{api:?}");
    assert_eq!(api.attempts, 0, "{api:?}");
    assert_eq!(api.error, None, "{api:?}");
    eventually(
        "the publisher to show the node in sync",
        Duration::from_secs(10),
        || async {
            let status = c.api_status(&id).await?;
            Ok(status["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| {
                    n["nodeId"] == "gw-f"
                        && n["status"] == "DEPLOYED"
                        && n["appliedRevision"] == 3
                        && n["inSync"] == true
                })
                .then_some(()))
        },
    )
    .await?;
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_small_revision_deploys_from_its_event_and_a_large_one_is_fetched() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let mut gw = env.gateway("gw-i", &[PROD])?;
    gw.reconcile_interval_ms = 600_000;
    let mut spec = env.spec(vec![gw])?;
    let tm = HttpFaultProxy::start(&spec.traffic_manager_url()).await?;
    spec.gateways[0].traffic_manager_url = Some(tm.url());
    let c = env.start_spec(spec, &["gw-i"]).await?;

    let id = c
        .publish(&mock_api("Inline", "/inline", "r1"), &[PROD])
        .await?;
    c.wait_applied("gw-i", &id, 1).await?;
    serves(&c, "gw-i", "/inline", "r1").await?;
    let path = format!("runtime-artifacts/{id}");
    assert_eq!(
        tm.requests(&path).len(),
        0,
        "the artifact came with its event"
    );

    // Over the inline limit: announced without the artifact, so fetched.
    let updated = c
        .publisher
        .update_api(
            &id,
            &too_large_to_inline(&mock_api("Inline", "/inline", "r2")),
        )
        .await?;
    ensure!(updated.status.as_u16() == 201, "{}", updated.text);
    c.publisher
        .deploy(&id, &[PROD], None)
        .await?
        .expect("POST", "deploy")?;
    c.wait_applied("gw-i", &id, 2).await?;
    serves(&c, "gw-i", "/inline", "r2").await?;
    assert_eq!(tm.requests(&path).len(), 1);
    Ok(())
}
