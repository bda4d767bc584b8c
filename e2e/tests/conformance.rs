//! The conformance suite: the same scenarios, written once, run on every
//! pair of backends (DESIGN.md §17, guarantee 8): SQLite with the
//! in-process bus (the embedded default), PostgreSQL with RabbitMQ, and
//! MariaDB with RabbitMQ.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use artisync_e2e::conformance::{
    ClusterUnderTest, EmbeddedCluster, ExternalCluster, LABEL1, NODES, PROD,
};
use artisync_e2e::{eventually, mock_api};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(20);

async fn call(c: &dyn ClusterUnderTest, node: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let url = format!("{}{path}", c.gateway_url(node));
    let r = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| url.clone())?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// Waits until `node` answers `path` with the mock API's tag, or (`None`)
/// with 404.
async fn serves(
    c: &dyn ClusterUnderTest,
    node: &str,
    path: &str,
    tag: Option<&str>,
) -> anyhow::Result<()> {
    let what = format!("{node} to serve {path} as {tag:?} ({})", c.backends());
    eventually(&what, DEADLINE, || async {
        let (status, body) = call(c, node, path).await?;
        Ok(match tag {
            Some(tag) => {
                (status == 200 && body.contains(&format!("\"tag\": \"{tag}\""))).then_some(())
            }
            None => (status == 404).then_some(()),
        })
    })
    .await
}

async fn publish(c: &dyn ClusterUnderTest, xml: &str, labels: &[&str]) -> anyhow::Result<String> {
    let publisher = c.publisher();
    let created = publisher.create_api(xml).await?;
    ensure!(created.status.as_u16() == 201, "create: {}", created.text);
    let id = created.body["id"].as_str().context("no id")?.to_owned();
    if !labels.is_empty() {
        let d = publisher.deploy(&id, labels, None).await?;
        ensure!(d.status.is_success(), "deploy: {}", d.text);
    }
    Ok(id)
}

/// A new revision of `id`, deployed to `labels`; answers its revision.
async fn update(
    c: &dyn ClusterUnderTest,
    id: &str,
    xml: &str,
    labels: &[&str],
) -> anyhow::Result<u64> {
    let publisher = c.publisher();
    let put = publisher.update_api(id, xml).await?;
    ensure!(
        put.status.as_u16() == 201,
        "PUT: {} {}",
        put.status,
        put.text
    );
    let revision = put.body["revision"].as_u64().context("no revision")?;
    let d = publisher.deploy(id, labels, None).await?;
    ensure!(d.status.is_success(), "deploy: {}", d.text);
    Ok(revision)
}

fn on(label: &str) -> impl Iterator<Item = &'static str> + '_ {
    NODES
        .iter()
        .filter(move |(_, l)| *l == label)
        .map(|(id, _)| *id)
}

// ---- the scenarios ------------------------------------------------------------

async fn publish_update_and_deploy(c: &mut dyn ClusterUnderTest) -> anyhow::Result<()> {
    let id = publish(&*c, &mock_api("Menu", "/menu", "r1"), &[PROD]).await?;
    for node in on(PROD) {
        serves(&*c, node, "/menu/hello", Some("r1")).await?;
    }
    let revision = update(&*c, &id, &mock_api("Menu", "/menu", "r2"), &[PROD]).await?;
    ensure!(revision == 2, "the update is revision 2, not {revision}");
    for node in on(PROD) {
        serves(&*c, node, "/menu/hello", Some("r2")).await?;
    }
    // The same body again: no new revision.
    let same = c
        .publisher()
        .update_api(&id, &mock_api("Menu", "/menu", "r2"))
        .await?;
    ensure!(
        same.status.as_u16() == 200,
        "identical PUT: {}",
        same.status
    );
    ensure!(same.body["revision"] == 2, "{}", same.text);
    let status = c
        .publisher()
        .0
        .get(&format!("/api/v1/apis/{id}/status"))
        .await?;
    ensure!(status.status.is_success(), "{}", status.text);
    eventually(
        "every node of the label to report revision 2",
        DEADLINE,
        || async {
            let status = c
                .publisher()
                .0
                .get(&format!("/api/v1/apis/{id}/status"))
                .await?;
            let nodes = status.body["nodes"].as_array().cloned().unwrap_or_default();
            let in_sync = nodes
                .iter()
                .filter(|n| n["inSync"] == true && n["appliedRevision"] == 2)
                .count();
            Ok((in_sync == on(PROD).count()).then_some(()))
        },
    )
    .await
}

async fn labels_decide_which_nodes_serve(c: &mut dyn ClusterUnderTest) -> anyhow::Result<()> {
    publish(&*c, &mock_api("Orders", "/orders", "o1"), &[LABEL1]).await?;
    publish(&*c, &mock_api("Both", "/both", "b1"), &[PROD, LABEL1]).await?;
    serves(&*c, "gw-3", "/orders/hello", Some("o1")).await?;
    for (node, _) in NODES {
        serves(&*c, node, "/both/hello", Some("b1")).await?;
    }
    for node in on(PROD) {
        // gw-3 has it, so the event has gone out; the others never do.
        ensure!(
            call(&*c, node, "/orders/hello").await?.0 == 404,
            "{node} serves Orders"
        );
    }
    Ok(())
}

async fn undeploy_removes_it_from_the_label(c: &mut dyn ClusterUnderTest) -> anyhow::Result<()> {
    let id = publish(&*c, &mock_api("Gone", "/gone", "g1"), &[PROD, LABEL1]).await?;
    for (node, _) in NODES {
        serves(&*c, node, "/gone/hello", Some("g1")).await?;
    }
    let u = c.publisher().undeploy(&id, PROD).await?;
    ensure!(u.status.is_success(), "undeploy: {}", u.text);
    for node in on(PROD) {
        serves(&*c, node, "/gone/hello", None).await?;
    }
    serves(&*c, "gw-3", "/gone/hello", Some("g1")).await
}

async fn delete_removes_it_everywhere(c: &mut dyn ClusterUnderTest) -> anyhow::Result<()> {
    let id = publish(&*c, &mock_api("Doomed", "/doomed", "d1"), &[PROD, LABEL1]).await?;
    for (node, _) in NODES {
        serves(&*c, node, "/doomed/hello", Some("d1")).await?;
    }
    let d = c.publisher().delete_api(&id).await?;
    ensure!(d.status.as_u16() == 204, "delete: {}", d.text);
    for (node, _) in NODES {
        serves(&*c, node, "/doomed/hello", None).await?;
    }
    let gone = c.publisher().0.get(&format!("/api/v1/apis/{id}")).await?;
    ensure!(gone.status.as_u16() == 404, "{}", gone.text);
    Ok(())
}

async fn a_restarted_gateway_converges(c: &mut dyn ClusterUnderTest) -> anyhow::Result<()> {
    let kept = publish(&*c, &mock_api("Kept", "/kept", "k1"), &[PROD]).await?;
    let dropped = publish(&*c, &mock_api("Dropped", "/dropped", "x1"), &[PROD]).await?;
    serves(&*c, "gw-2", "/kept/hello", Some("k1")).await?;
    serves(&*c, "gw-2", "/dropped/hello", Some("x1")).await?;
    c.stop_gateway("gw-2").await?;
    update(&*c, &kept, &mock_api("Kept", "/kept", "k2"), &[PROD]).await?;
    let u = c.publisher().undeploy(&dropped, PROD).await?;
    ensure!(u.status.is_success(), "undeploy: {}", u.text);
    publish(&*c, &mock_api("Added", "/added", "a1"), &[PROD]).await?;
    serves(&*c, "gw-1", "/added/hello", Some("a1")).await?;
    c.start_gateway("gw-2").await?;
    serves(&*c, "gw-2", "/kept/hello", Some("k2")).await?;
    serves(&*c, "gw-2", "/dropped/hello", None).await?;
    serves(&*c, "gw-2", "/added/hello", Some("a1")).await
}

async fn a_lost_event_is_repaired_by_reconcile(c: &mut dyn ClusterUnderTest) -> anyhow::Result<()> {
    let a = publish(&*c, &mock_api("Lost", "/lost", "l1"), &[PROD]).await?;
    let b = publish(&*c, &mock_api("Removed", "/removed", "r1"), &[PROD]).await?;
    serves(&*c, "gw-1", "/lost/hello", Some("l1")).await?;
    serves(&*c, "gw-1", "/removed/hello", Some("r1")).await?;
    // The node is cut off while the events wait in its queue, and they
    // are dropped there: only its periodic reconcile can repair it.
    c.cut_events("gw-1").await?;
    update(&*c, &a, &mock_api("Lost", "/lost", "l2"), &[PROD]).await?;
    let u = c.publisher().undeploy(&b, PROD).await?;
    ensure!(u.status.is_success(), "undeploy: {}", u.text);
    c.lose_events("gw-1", 2).await?;
    serves(&*c, "gw-1", "/lost/hello", Some("l2")).await?;
    serves(&*c, "gw-1", "/removed/hello", None).await?;
    c.heal_events("gw-1").await?;
    // And the node is back on its events.
    update(&*c, &a, &mock_api("Lost", "/lost", "l3"), &[PROD]).await?;
    serves(&*c, "gw-1", "/lost/hello", Some("l3")).await
}

async fn a_restarted_cluster_serves_what_it_served(
    c: &mut dyn ClusterUnderTest,
) -> anyhow::Result<()> {
    let id = publish(&*c, &mock_api("Durable", "/durable", "v1"), &[PROD]).await?;
    update(&*c, &id, &mock_api("Durable", "/durable", "v2"), &[PROD]).await?;
    publish(&*c, &mock_api("Other", "/other", "o1"), &[LABEL1]).await?;
    let (tm, token) = c.traffic_manager();
    let store = format!("{tm}/api/v1/organizations/acme/environments/prod/stores/sessions");
    let http = reqwest::Client::new();
    let put = http
        .put(&store)
        .bearer_auth(&token)
        .json(&json!({"defaultTtlSeconds": 3600}))
        .send()
        .await?;
    ensure!(put.status().is_success(), "store: {}", put.text().await?);
    let item = format!("{store}/partitions/p/keys/counter");
    let put = http
        .put(&item)
        .bearer_auth(&token)
        .json(&json!({"keyId": "counter", "valueType": "NUMBER", "numberValue": 41}))
        .send()
        .await?;
    ensure!(put.status().is_success(), "item: {}", put.text().await?);
    for node in on(PROD) {
        serves(&*c, node, "/durable/hello", Some("v2")).await?;
    }
    serves(&*c, "gw-3", "/other/hello", Some("o1")).await?;

    c.restart().await?;

    for node in on(PROD) {
        serves(&*c, node, "/durable/hello", Some("v2")).await?;
    }
    serves(&*c, "gw-3", "/other/hello", Some("o1")).await?;
    let detail = c.publisher().0.get(&format!("/api/v1/apis/{id}")).await?;
    ensure!(
        detail.body["revisions"].as_array().map(Vec::len) == Some(2),
        "{}",
        detail.text
    );
    let got = http.get(&item).bearer_auth(&token).send().await?;
    ensure!(
        got.status().is_success(),
        "item after the restart: {}",
        got.status()
    );
    let body: serde_json::Value = got.json().await?;
    ensure!(body["numberValue"] == 41, "{body}");
    // And changes still flow.
    update(&*c, &id, &mock_api("Durable", "/durable", "v3"), &[PROD]).await?;
    serves(&*c, "gw-1", "/durable/hello", Some("v3")).await
}

async fn the_object_store_keeps_its_contract(c: &mut dyn ClusterUnderTest) -> anyhow::Result<()> {
    let (tm, token) = c.traffic_manager();
    let base = format!("{tm}/api/v1/organizations/acme/environments/dev/stores/st");
    let http = reqwest::Client::new();
    let send = |rb: reqwest::RequestBuilder| {
        let token = token.clone();
        async move {
            let r = rb.bearer_auth(token).send().await?;
            let status = r.status().as_u16();
            let etag = r
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = r.text().await?;
            anyhow::Ok((status, etag, body))
        }
    };
    let (s, _, b) = send(http.put(&base).json(&json!({"defaultTtlSeconds": 600}))).await?;
    ensure!(s == 200, "{s} {b}");
    let key = format!("{base}/partitions/p/keys/k");
    let value = |n: i64| json!({"keyId": "k", "valueType": "NUMBER", "numberValue": n});
    let (s, etag, b) = send(http.post(&key).json(&value(1))).await?;
    ensure!(s == 201, "POST {s} {b}");
    let (s, _, _) = send(http.post(&key).json(&value(1))).await?;
    ensure!(s == 409, "a second POST is 409, not {s}");
    let etag = etag.context("no ETag")?;
    let (s, next, b) = send(http.put(&key).header("If-Match", &etag).json(&value(2))).await?;
    ensure!(s == 200, "CAS {s} {b}");
    let (s, _, _) = send(http.put(&key).header("If-Match", &etag).json(&value(3))).await?;
    ensure!(s == 412, "a stale CAS is 412, not {s}");
    let (s, _, b) = send(http.get(&key)).await?;
    ensure!(s == 200 && b.contains("\"numberValue\":2"), "{s} {b}");
    let (s, _, b) = send(
        http.put(format!("{base}/partitions/p/keys/bin"))
            .json(&json!({"keyId": "bin", "valueType": "BINARY", "binaryValue": "aGkAAQ=="})),
    )
    .await?;
    ensure!(s == 200, "{s} {b}");
    let (s, _, b) = send(http.get(format!("{base}/partitions/p/keys?pageSize=1"))).await?;
    ensure!(s == 200 && b.contains("nextPageToken"), "{s} {b}");
    let (s, _, b) = send(http.get(format!("{base}/partitions"))).await?;
    ensure!(s == 200 && b.contains("\"p\""), "{s} {b}");
    ensure!(next.is_some(), "the CAS answered an ETag");
    let (s, _, _) = send(http.delete(&key)).await?;
    ensure!(s == 204, "DELETE {s}");
    let (s, _, _) = send(http.get(&key)).await?;
    ensure!(s == 404, "deleted, still {s}");
    let (s, _, _) = send(http.delete(&base)).await?;
    if s != 204 {
        bail!("deleting the store answered {s}");
    }
    Ok(())
}

// ---- on every pair of backends ---------------------------------------------

macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() -> anyhow::Result<()> {
                    let c = Box::new(super::EmbeddedCluster::start().await?);
                    super::run(c, super::$scenario).await
                }
            )*
        }
        mod postgres_rabbitmq {
            $(
                #[tokio::test]
                async fn $scenario() -> anyhow::Result<()> {
                    let c = Box::new(super::ExternalCluster::postgres().await?);
                    super::run(c, super::$scenario).await
                }
            )*
        }
        mod mariadb_rabbitmq {
            $(
                #[tokio::test]
                async fn $scenario() -> anyhow::Result<()> {
                    let c = Box::new(super::ExternalCluster::mysql().await?);
                    super::run(c, super::$scenario).await
                }
            )*
        }
    };
}

/// Runs one scenario and stops the cluster, whatever the outcome.
async fn run<F>(mut c: Box<dyn ClusterUnderTest>, scenario: F) -> anyhow::Result<()>
where
    F: for<'c> AsyncFnOnce(&'c mut dyn ClusterUnderTest) -> anyhow::Result<()>,
{
    let backends = c.backends();
    let result = scenario(c.as_mut()).await;
    c.stop().await;
    result.with_context(|| format!("on {backends}"))
}

on_every_backend!(
    publish_update_and_deploy,
    labels_decide_which_nodes_serve,
    undeploy_removes_it_from_the_label,
    delete_removes_it_everywhere,
    a_restarted_gateway_converges,
    a_lost_event_is_repaired_by_reconcile,
    a_restarted_cluster_serves_what_it_served,
    the_object_store_keeps_its_contract,
);
