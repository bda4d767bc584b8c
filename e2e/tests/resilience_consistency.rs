//! Never lose a change (issue 3), and never go back: duplicate and
//! out-of-order events, the fleet's view of what each node runs (stale
//! nodes included), an operator's local undeploy, and graceful shutdown.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use artisync_e2e::backend::Backend;
use artisync_e2e::{TestCluster, TestEnv, eventually, mock_api, tail};
use serde_json::{Value, json};

const PROD: &str = "Production and Sandbox";
const LABEL1: &str = "Label1";

/// Creates a new revision tagged `tag` and deploys it to PROD; returns
/// (revision, sha256).
async fn update_and_deploy(
    c: &TestCluster,
    id: &str,
    name: &str,
    context: &str,
    tag: &str,
) -> anyhow::Result<(u64, String)> {
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
    c.publisher
        .deploy(id, &[PROD], None)
        .await?
        .expect("POST", "deploy")?;
    Ok((
        updated.body["revision"].as_u64().context("revision")?,
        updated.body["sha256"]
            .as_str()
            .context("sha256")?
            .to_owned(),
    ))
}

fn node<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["nodeId"] == id)
}

#[tokio::test]
async fn duplicate_and_out_of_order_events_never_take_a_node_back() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let c = env.start(vec![env.gateway("gw-d", &[PROD])?]).await?;
    let apis = [("Xray", "/xray"), ("Yankee", "/yankee"), ("Zulu", "/zulu")];
    // name -> (id, revision -> sha256)
    let mut published: BTreeMap<&str, (String, BTreeMap<u64, String>)> = BTreeMap::new();
    for (name, context) in apis {
        let created = c
            .publisher
            .create_api(&mock_api(name, context, "r1"))
            .await?;
        ensure!(created.status.as_u16() == 201, "{}", created.text);
        let id = created.body["id"].as_str().context("id")?.to_owned();
        let sha = created.body["sha256"].as_str().context("sha")?.to_owned();
        c.publisher
            .deploy(&id, &[PROD], None)
            .await?
            .expect("POST", "deploy")?;
        c.wait_applied("gw-d", &id, 1).await?;
        published.insert(name, (id, BTreeMap::from([(1, sha)])));
    }
    let event = |kind: &str,
                 name: &str,
                 context: &str,
                 id: &str,
                 revision: u64,
                 sha: &str,
                 labels: &[&str],
                 sequence: i64| {
        json!({
            "eventId": uuid::Uuid::new_v4(),
            "type": kind,
            "timestamp": chrono::Utc::now(),
            "apiId": id,
            "name": name,
            "version": "1.0",
            "context": context,
            "revision": revision,
            "sha256": sha,
            "gatewayLabels": labels,
            "sequence": sequence,
        })
        .to_string()
    };

    // A watcher samples the admin API and the data plane as fast as it can
    // while updates and injected events interleave.
    let done = Cell::new(false);
    let admin_seen: RefCell<BTreeMap<String, Vec<u64>>> = RefCell::new(BTreeMap::new());
    let served_seen: RefCell<BTreeMap<&str, Vec<u64>>> = RefCell::new(BTreeMap::new());
    let watcher = async {
        while !done.get() {
            let applied = c.applied_on("gw-d").await?;
            for (id, (revision, _)) in applied {
                admin_seen
                    .borrow_mut()
                    .entry(id)
                    .or_default()
                    .push(revision);
            }
            for (_, context) in apis {
                let (status, body) = c.call("gw-d", &format!("{context}/hello")).await?;
                ensure!(status == 200, "{context}: {status} {body}");
                let tag: Value = serde_json::from_str(&body)?;
                let n = tag["tag"]
                    .as_str()
                    .and_then(|t| t.strip_prefix('r'))
                    .and_then(|t| t.parse::<u64>().ok())
                    .context("a tag")?;
                served_seen.borrow_mut().entry(context).or_default().push(n);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(())
    };
    let ids: Vec<String> = published.values().map(|(id, _)| id.clone()).collect();
    let mut injected = 0;
    let updater = async {
        let mut rng_state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            // xorshift: reproducible "random" picks
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            rng_state % n
        };
        for round in 2..=8u64 {
            for (name, context) in apis {
                let id = published[name].0.clone();
                let (revision, sha) =
                    update_and_deploy(&c, &id, name, context, &format!("r{round}")).await?;
                assert_eq!(revision, round);
                published
                    .get_mut(name)
                    .context("published")?
                    .1
                    .insert(revision, sha);
                let shas = &published[name].1;
                // An old revision, a duplicate of the new one, a removal
                // from an earlier time, and one for a label it does not
                // serve.
                let old = 1 + next(round - 1);
                let seq = (round as i64) * 10;
                let payloads = [
                    event(
                        "DEPLOY_API_IN_GATEWAY",
                        name,
                        context,
                        &id,
                        old,
                        &shas[&old],
                        &[PROD],
                        seq - 9,
                    ),
                    event(
                        "DEPLOY_API_IN_GATEWAY",
                        name,
                        context,
                        &id,
                        revision,
                        &shas[&revision],
                        &[PROD],
                        seq,
                    ),
                    event(
                        "REMOVE_API_FROM_GATEWAY",
                        name,
                        context,
                        &id,
                        revision - 1,
                        &shas[&(revision - 1)],
                        &[PROD],
                        seq - 5,
                    ),
                    event(
                        "DEPLOY_API_IN_GATEWAY",
                        name,
                        context,
                        &id,
                        old,
                        &shas[&old],
                        &[PROD],
                        1,
                    ),
                    event(
                        "REMOVE_API_FROM_GATEWAY",
                        name,
                        context,
                        &id,
                        revision + 50,
                        &"0".repeat(64),
                        &[LABEL1],
                        seq + 1,
                    ),
                ];
                for p in &payloads {
                    env.inject("gw-d", p.as_bytes()).await?;
                    injected += 1;
                }
            }
        }
        anyhow::Ok(())
    };
    let updates = async {
        let r = updater.await;
        if r.is_ok() {
            for id in &ids {
                c.wait_applied("gw-d", id, 8).await?;
            }
            // A marker after everything injected; then the queue drains.
            let marker = c
                .publish(&mock_api("Marker", "/marker", "m"), &[PROD])
                .await?;
            c.wait_applied("gw-d", &marker, 1).await?;
            eventually("the queue to drain", Duration::from_secs(10), || async {
                Ok((env.queue_depth("gw-d").await? == 0).then_some(()))
            })
            .await?;
        }
        done.set(true);
        r
    };
    let (watched, updated) = tokio::join!(watcher, updates);
    updated?;
    watched?;
    assert_eq!(injected, 3 * 7 * 5);

    for (id, revisions) in admin_seen.borrow().iter() {
        assert!(
            revisions.windows(2).all(|w| w[0] <= w[1]),
            "{id} went back in the admin API: {revisions:?}"
        );
    }
    for (context, tags) in served_seen.borrow().iter() {
        assert!(
            tags.windows(2).all(|w| w[0] <= w[1]),
            "{context} went back on the data plane: {tags:?}"
        );
        assert!(tags.len() > 20, "{context}: only {} samples", tags.len());
    }
    // Everything is at the newest revision and nothing failed.
    let applied = c.applied_on("gw-d").await?;
    for (name, (id, _)) in &published {
        assert_eq!(
            applied.get(id),
            Some(&(8, "DEPLOYED".to_owned())),
            "{name}: {applied:?}"
        );
    }
    for (_, context) in apis {
        let (status, body) = c.call("gw-d", &format!("{context}/hello")).await?;
        assert_eq!(status, 200);
        assert!(body.contains("\"tag\": \"r8\""), "{context}: {body}");
    }
    let apis_view = c.admin_apis("gw-d").await?;
    for api in apis_view["apis"].as_array().into_iter().flatten() {
        assert_eq!(api["attempts"], 0, "{api}");
        assert_eq!(api["error"], Value::Null, "{api}");
    }
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_status_endpoint_shows_every_node_and_a_killed_node_turns_stale() -> anyhow::Result<()>
{
    let env = TestEnv::new().await?;
    let mut gateways = vec![
        env.gateway("gw-1", &[PROD])?,
        env.gateway("gw-2", &[PROD])?,
        env.gateway("gw-3", &[LABEL1])?,
    ];
    for gw in &mut gateways {
        gw.status_interval_ms = 500;
    }
    let stale_after = Duration::from_secs(3);
    let mut spec = env.spec(gateways)?;
    spec.gateway_stale_after_ms = Some(stale_after.as_millis() as u64);
    let mut c = env.start_spec(spec, &["gw-1", "gw-2", "gw-3"]).await?;

    let id = c.publish(&mock_api("Seen", "/seen", "r1"), &[PROD]).await?;
    let (revision, _) = update_and_deploy(&c, &id, "Seen", "/seen", "r2").await?;
    assert_eq!(revision, 2);
    for gw in ["gw-1", "gw-2"] {
        c.wait_applied(gw, &id, 2).await?;
    }
    let status = eventually(
        "both nodes to report revision 2",
        Duration::from_secs(10),
        || async {
            let status = c.api_status(&id).await?;
            let ok = ["gw-1", "gw-2"]
                .iter()
                .all(|gw| node(&status, gw).is_some_and(|n| n["appliedRevision"] == 2));
            Ok(ok.then_some(status))
        },
    )
    .await?;
    for gw in ["gw-1", "gw-2"] {
        let n = node(&status, gw).context("listed")?;
        assert_eq!(n["status"], "DEPLOYED", "{n}");
        assert_eq!(n["desiredRevision"], 2, "{n}");
        assert_eq!(n["inSync"], true, "{n}");
        assert_eq!(n["expected"], true, "{n}");
        assert_eq!(n["stale"], false, "{n}");
        assert_eq!(n["labels"], json!([PROD]), "{n}");
        assert!(n["lastReport"].is_string(), "{n}");
        assert!(n["sha256"].is_string(), "{n}");
    }
    // gw-3 does not serve the API's label.
    assert!(
        node(&status, "gw-3")
            .is_none_or(|n| n["expected"] == false && n["appliedRevision"].is_null()),
        "{status}"
    );

    c.cluster.kill("gw-2").await?;
    let killed = Instant::now();
    let status = eventually(
        "the killed node to turn stale",
        stale_after + Duration::from_secs(10),
        || async {
            let status = c.api_status(&id).await?;
            Ok(node(&status, "gw-2")
                .is_some_and(|n| n["stale"] == true)
                .then_some(status))
        },
    )
    .await?;
    assert!(
        killed.elapsed() >= stale_after.saturating_sub(Duration::from_millis(600)),
        "stale after {:?}, before the threshold",
        killed.elapsed()
    );
    let live = node(&status, "gw-1").context("gw-1")?;
    assert_eq!(live["stale"], false, "{live}");
    // What it last reported is kept, flagged stale.
    let dead = node(&status, "gw-2").context("gw-2")?;
    assert_eq!(dead["appliedRevision"], 2, "{dead}");

    let gateways = c.publisher.0.get("/api/v1/gateways").await?;
    ensure!(gateways.status.is_success(), "{}", gateways.text);
    let by_id = |id: &str| {
        gateways.body["gateways"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["nodeId"] == id)
            .cloned()
    };
    let gw1 = by_id("gw-1").context("gw-1 listed")?;
    let gw2 = by_id("gw-2").context("gw-2 listed")?;
    let gw3 = by_id("gw-3").context("gw-3 listed")?;
    assert_eq!(gw1["stale"], false, "{gw1}");
    assert_eq!(gw1["apisInSync"], 1, "{gw1}");
    assert_eq!(gw1["apisBehind"], 0, "{gw1}");
    assert_eq!(gw2["stale"], true, "{gw2}");
    assert_eq!(gw3["stale"], false, "{gw3}");
    assert_eq!(gw3["labels"], json!([LABEL1]), "{gw3}");
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_local_undeploy_holds_across_reconciles_until_a_newer_revision_or_a_redeploy()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut gw = env.gateway("gw-u", &[PROD])?;
    gw.reconcile_interval_ms = 300;
    let mut c = env.start(vec![gw]).await?;
    let id = c.publish(&mock_api("Held", "/held", "r1"), &[PROD]).await?;
    c.wait_applied("gw-u", &id, 1).await?;

    let undeployed = c
        .admin_post("gw-u", &format!("/api/gateway/v1/undeploy-api?apiId={id}"))
        .await?;
    assert_eq!(undeployed.status.as_u16(), 200, "{}", undeployed.text);
    assert_eq!(c.call("gw-u", "/held/hello").await?.0, 404);
    let runs = c
        .metric("gw-u", "artisync_gateway_reconcile_runs_total")
        .await?;
    eventually(
        "three reconciles to run",
        Duration::from_secs(10),
        || async {
            let now = c
                .metric("gw-u", "artisync_gateway_reconcile_runs_total")
                .await?;
            Ok((now >= runs + 3.0).then_some(()))
        },
    )
    .await?;
    let (status, body) = c.call("gw-u", "/held/hello").await?;
    assert_eq!(status, 404, "reconcile brought it back: {body}");
    let applied = c.applied_on("gw-u").await?;
    assert_eq!(
        applied.get(&id),
        Some(&(0, "UNDEPLOYED".to_owned())),
        "{applied:?}"
    );

    // The hold survives a restart of the node.
    c.cluster
        .process("gw-u")
        .context("gw-u runs")?
        .stop(Duration::from_secs(15))
        .await;
    c.cluster.restart_process("gw-u")?;
    c.cluster
        .wait_ready("gw-u", Duration::from_secs(30))
        .await?;
    let (status, body) = c.call("gw-u", "/held/hello").await?;
    assert_eq!(status, 404, "the restart brought it back: {body}");
    let applied = c.applied_on("gw-u").await?;
    assert_eq!(
        applied.get(&id),
        Some(&(0, "UNDEPLOYED".to_owned())),
        "{applied:?}"
    );

    // redeploy-api lifts the hold.
    let redeployed = c
        .admin_post("gw-u", &format!("/api/gateway/v1/redeploy-api?apiId={id}"))
        .await?;
    assert_eq!(redeployed.status.as_u16(), 200, "{}", redeployed.text);
    c.wait_applied("gw-u", &id, 1).await?;
    let (status, body) = c.call("gw-u", "/held/hello").await?;
    assert_eq!(status, 200, "{body}");

    // Held again; a newer revision lifts it too.
    let undeployed = c
        .admin_post("gw-u", &format!("/api/gateway/v1/undeploy-api?apiId={id}"))
        .await?;
    assert_eq!(undeployed.status.as_u16(), 200, "{}", undeployed.text);
    assert_eq!(c.call("gw-u", "/held/hello").await?.0, 404);
    update_and_deploy(&c, &id, "Held", "/held", "r2").await?;
    c.wait_applied("gw-u", &id, 2).await?;
    let (status, body) = c.call("gw-u", "/held/hello").await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"tag\": \"r2\""), "{body}");
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() -> anyhow::Result<()> {
    let backend = Backend::start().await?;
    let env = TestEnv::new().await?;
    let mut c = env.start(vec![env.gateway("gw-t", &[PROD])?]).await?;
    let xml = format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="Slow" context="/slow" version="1.0">
  <resource methods="GET" uri-template="/wait/{{ms}}">
    <inSequence>
      <send><endpoint><http uri-template="{b}/slow/{{uri.var.ms}}"/></endpoint></send>
    </inSequence>
    <outSequence><send/></outSequence>
  </resource>
</api>"#,
        b = backend.url()
    );
    let id = c.publish(&xml, &[PROD]).await?;
    c.wait_applied("gw-t", &id, 1).await?;

    let url = format!("{}/slow/wait/1500", c.gateway_url("gw-t")?);
    let started = Instant::now();
    let request = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(20))
            .send()
            .await?;
        let status = r.status().as_u16();
        anyhow::Ok((status, r.text().await?))
    });
    eventually(
        "the request to reach the backend",
        Duration::from_secs(10),
        || async { Ok((backend.received() == 1).then_some(())) },
    )
    .await?;
    let exit = c
        .cluster
        .process("gw-t")
        .context("gw-t runs")?
        .stop(Duration::from_secs(15))
        .await;
    let (status, body) = request.await??;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}\n{}", tail(&c.cluster.log("gw-t"), 30));
    let echoed: Value = serde_json::from_str(&body)?;
    assert_eq!(echoed["path"], "/slow/1500");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(
        exit.is_some_and(|s| s.success()),
        "exit: {exit:?}\n{}",
        tail(&c.cluster.log("gw-t"), 30)
    );
    // And it is gone: new connections are refused.
    assert!(c.call("gw-t", "/slow/wait/1").await.is_err());
    c.stop().await;
    Ok(())
}
