//! The core pipeline end to end, with the real binaries, PostgreSQL and
//! RabbitMQ: publish, deploy to labels, serve traffic only where a label
//! is served.

use std::time::Duration;

use anyhow::Context;
use artisync_e2e::backend::Backend;
use artisync_e2e::{TestEnv, eventually, mock_api};
use serde_json::json;

const PROD: &str = "Production and Sandbox";
const LABEL1: &str = "Label1";

/// The `artisync up` topology: gw-1, gw-2 on PROD and gw-3 on Label1.
async fn three_gateways(env: &TestEnv) -> anyhow::Result<artisync_e2e::TestCluster> {
    env.start(vec![
        env.gateway("gw-1", &[PROD])?,
        env.gateway("gw-2", &[PROD])?,
        env.gateway("gw-3", &[LABEL1])?,
    ])
    .await
}

#[tokio::test]
async fn labels_decide_which_gateways_serve_an_api() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let c = three_gateways(&env).await?;

    let id = c
        .publish(&mock_api("Orders", "/orders", "r1"), &[PROD])
        .await?;
    c.wait_applied("gw-1", &id, 1).await?;
    c.wait_applied("gw-2", &id, 1).await?;
    for gw in ["gw-1", "gw-2"] {
        let (status, body) = c.call(gw, "/orders/hello").await?;
        assert_eq!(status, 200, "{gw}: {body}");
        assert!(body.contains("\"tag\": \"r1\""), "{gw}: {body}");
    }
    // gw-3 serves Label1 only: it never got the API.
    let (status, _) = c.call("gw-3", "/orders/hello").await?;
    assert_eq!(status, 404);
    assert_eq!(c.applied_revision("gw-3", &id).await?, None);

    // Deploying to Label1 as well reaches gw-3.
    let d = c.publisher.deploy(&id, &[PROD, LABEL1], None).await?;
    assert_eq!(d.status.as_u16(), 200, "{}", d.text);
    assert_eq!(d.body["changedLabels"], json!([LABEL1]));
    assert_eq!(d.body["unchangedLabels"], json!([PROD]));
    c.wait_applied("gw-3", &id, 1).await?;
    assert_eq!(c.call("gw-3", "/orders/hello").await?.0, 200);

    // Undeploying from PROD removes it there only.
    let u = c.publisher.undeploy(&id, PROD).await?;
    assert_eq!(u.status.as_u16(), 200, "{}", u.text);
    for gw in ["gw-1", "gw-2"] {
        eventually(
            "undeploy to reach a PROD gateway",
            Duration::from_secs(20),
            || async { Ok((c.call(gw, "/orders/hello").await?.0 == 404).then_some(())) },
        )
        .await?;
    }
    assert_eq!(c.call("gw-3", "/orders/hello").await?.0, 200);
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn updates_swap_revisions_and_delete_removes_everywhere() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let c = env
        .start(vec![
            env.gateway("gw-a", &[PROD])?,
            env.gateway("gw-b", &[PROD])?,
        ])
        .await?;
    let id = c
        .publish(&mock_api("Stock", "/stock", "r1"), &[PROD])
        .await?;
    c.wait_applied("gw-a", &id, 1).await?;

    let updated = c
        .publisher
        .update_api(&id, &mock_api("Stock", "/stock", "r2"))
        .await?;
    assert_eq!(updated.status.as_u16(), 201, "{}", updated.text);
    assert_eq!(updated.body["revision"], 2);
    // A new revision is not live until deployed.
    assert!(c.call("gw-a", "/stock/hello").await?.1.contains("r1"));
    c.publisher
        .deploy(&id, &[PROD], None)
        .await?
        .expect("POST", "deploy")?;
    for gw in ["gw-a", "gw-b"] {
        c.wait_applied(gw, &id, 2).await?;
        let (status, body) = c.call(gw, "/stock/hello").await?;
        assert_eq!(status, 200);
        assert!(body.contains("\"tag\": \"r2\""), "{gw}: {body}");
    }

    let deleted = c.publisher.delete_api(&id).await?;
    assert_eq!(deleted.status.as_u16(), 204, "{}", deleted.text);
    for gw in ["gw-a", "gw-b"] {
        eventually(
            "delete to reach the gateway",
            Duration::from_secs(20),
            || async { Ok((c.call(gw, "/stock/hello").await?.0 == 404).then_some(())) },
        )
        .await?;
    }
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_gateway_started_after_the_deploy_gets_the_api_at_start_up() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let gateways = vec![
        env.gateway("gw-early", &[PROD])?,
        env.gateway("gw-late", &[PROD])?,
    ];
    let mut c = env.start_some(gateways, &["gw-early"]).await?;
    let id = c.publish(&mock_api("Late", "/late", "r1"), &[PROD]).await?;
    c.wait_applied("gw-early", &id, 1).await?;

    // A node whose queue did not exist when the event was published.
    c.cluster.spawn("gw-late").await?;
    // Sync mode: ready means the start-up deployment is done.
    assert_eq!(c.applied_revision("gw-late", &id).await?, Some(1));
    assert_eq!(c.call("gw-late", "/late/hello").await?.0, 200);
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn stale_and_duplicate_events_change_nothing() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let c = env.start(vec![env.gateway("gw-s", &[PROD])?]).await?;
    let id = c
        .publish(&mock_api("Fresh", "/fresh", "r1"), &[PROD])
        .await?;
    c.wait_applied("gw-s", &id, 1).await?;
    c.publisher
        .update_api(&id, &mock_api("Fresh", "/fresh", "r2"))
        .await?
        .expect("PUT", "update")?;
    c.publisher
        .deploy(&id, &[PROD], None)
        .await?
        .expect("POST", "deploy")?;
    c.wait_applied("gw-s", &id, 2).await?;

    // Inject an old deploy event for revision 1, a duplicate of revision 2,
    // and a removal for a label the API is still deployed on.
    let event = |kind: &str, revision: u32, sequence: i64| {
        json!({
            "eventId": uuid::Uuid::new_v4(),
            "type": kind,
            "timestamp": chrono::Utc::now(),
            "apiId": id,
            "name": "Fresh",
            "version": "1.0",
            "context": "/fresh",
            "revision": revision,
            "sha256": "0".repeat(64),
            "gatewayLabels": [PROD],
            "sequence": sequence,
        })
        .to_string()
    };
    env.inject("gw-s", event("DEPLOY_API_IN_GATEWAY", 1, 1).as_bytes())
        .await?;
    env.inject("gw-s", event("DEPLOY_API_IN_GATEWAY", 2, 2).as_bytes())
        .await?;
    env.inject("gw-s", event("REMOVE_API_FROM_GATEWAY", 1, 1).as_bytes())
        .await?;
    env.inject("gw-s", b"this is not an event").await?;
    // A marker event after the injected ones: once it is applied, the
    // node has handled everything before it in the queue.
    let marker = c
        .publish(&mock_api("Marker", "/marker", "m"), &[PROD])
        .await?;
    c.wait_applied("gw-s", &marker, 1).await?;

    assert_eq!(c.applied_revision("gw-s", &id).await?, Some(2));
    let (status, body) = c.call("gw-s", "/fresh/hello").await?;
    assert_eq!(status, 200);
    assert!(body.contains("r2"), "{body}");
    // The unparsable message went to the dead-letter queue, not back.
    let (conn, channel) = env.amqp_channel().await?;
    let dlq = format!("{}.dead-letter", env.queue_of("gw-s"));
    eventually(
        "the bad message to be dead-lettered",
        Duration::from_secs(10),
        || async {
            let declared = channel
                .queue_declare(
                    dlq.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await
                .context("the dead-letter queue exists")?;
            Ok((declared.message_count() == 1).then_some(()))
        },
    )
    .await?;
    let _ = conn.close(200, "done".into()).await;
    // Every injected event has been handled by now; still revision 2.
    assert_eq!(c.applied_revision("gw-s", &id).await?, Some(2));
    c.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_pizzashack_bundle_proxies_to_its_sandbox_endpoint() -> anyhow::Result<()> {
    let backend = Backend::start().await?;
    let env = TestEnv::new().await?;
    let c = env.start(vec![env.gateway("gw-p", &[PROD])?]).await?;
    let api = include_str!("../../config/compat/wso2-apim-PizzaShackAPI_v1.0.0.xml");
    let api = api.split_once("?>").map(|(_, rest)| rest).unwrap_or(api);
    let bundle = format!(
        r#"<definitions xmlns="http://ws.apache.org/ns/synapse">{api}
<endpoint name="PizzaShackAPI--v1.0.0_APIproductionEndpoint"><http uri-template="{b}/production"/></endpoint>
<endpoint name="PizzaShackAPI--v1.0.0_APIsandboxEndpoint"><http uri-template="{b}/sandbox"/></endpoint>
</definitions>"#,
        b = backend.url()
    );
    // Bare, it refers to endpoints it does not define.
    let bare = c.publisher.create_api(api).await?;
    assert_eq!(bare.status.as_u16(), 422, "{}", bare.text);
    assert!(
        bare.text.contains("APIproductionEndpoint") && bare.text.contains("APIsandboxEndpoint")
    );

    let id = c.publish(&bundle, &[PROD]).await?;
    c.wait_applied("gw-p", &id, 1).await?;
    let (status, body) = c.call("gw-p", "/pizzashack/1.0.0/menu").await?;
    assert_eq!(status, 200, "{body}");
    let echoed: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(echoed["path"], "/sandbox/menu");
    let (_, body) = c.call("gw-p", "/pizzashack/1.0.0/order/42").await?;
    let echoed: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(echoed["path"], "/sandbox/order/42");
    c.stop().await;
    Ok(())
}
