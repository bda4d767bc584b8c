//! Signed changes on the real binaries (DESIGN.md §16): the publisher signs
//! every event with its `signing_key_file`, the gateway checks each against
//! `publisher_public_key`. An event forged with broker credentials, with an
//! inline artifact, a huge revision and a fresh timestamp, is deployed by
//! no node; the refusal shows in the node's admin API, its metrics and the
//! status it reports to the publisher.

use std::time::Duration;

use anyhow::{Context, ensure};
use artisync_domain::event::{DeploymentEvent, EventType};
use artisync_domain::signature::EventSigningKey;
use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use artisync_e2e::cluster::Signing;
use artisync_e2e::{TestEnv, eventually, mock_api};

const PROD: &str = "Production and Sandbox";
const DEADLINE: Duration = Duration::from_secs(30);

fn forged_event(api_id: ApiId, xml: &str) -> anyhow::Result<DeploymentEvent> {
    Ok(DeploymentEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: EventType::DeployApiInGateway,
        timestamp: chrono::Utc::now(),
        api_id,
        name: "Signed".into(),
        version: "1.0".into(),
        context: "/signed".into(),
        revision: Revision::new(999_999)?,
        sha256: Sha256Digest::of(xml.as_bytes()),
        gateway_labels: vec![GatewayLabel::parse(PROD)?],
        sequence: i64::MAX / 2,
        artifact: Some(xml.to_owned()),
        signature: None,
    })
}

#[tokio::test]
async fn a_forged_event_is_deployed_by_no_node_and_the_refusal_is_visible() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let key = EventSigningKey::from_seed(seed);
    let key_file = env.work_dir.join("signing.pem");
    std::fs::write(&key_file, key.to_pem()?)?;
    let mut spec = env.spec(vec![env.gateway("gw-1", &[PROD])?])?;
    spec.signing = Some(Signing {
        key_file,
        public_key: key.public_key_base64(),
    });
    let c = env.start_spec(spec, &["gw-1"]).await?;

    // What the publisher signs is deployed.
    let id = c
        .publish(&mock_api("Signed", "/signed", "r1"), &[PROD])
        .await?;
    eventually("gw-1 to serve the signed API", DEADLINE, || async {
        let (status, body) = c.call("gw-1", "/signed/hello").await?;
        Ok((status == 200 && body.contains("r1")).then_some(()))
    })
    .await?;
    let api_id: ApiId = id.parse()?;

    // Forged with the broker credentials: unsigned, then signed with a key
    // that is not the publisher's, and one for an API nobody published.
    let forged_xml = mock_api("Signed", "/signed", "forged");
    c_inject(&env, &forged_event(api_id, &forged_xml)?).await?;
    let mut wrongly_signed = forged_event(api_id, &forged_xml)?;
    EventSigningKey::from_seed([9; 32]).sign(&mut wrongly_signed);
    c_inject(&env, &wrongly_signed).await?;
    let intruder = ApiId::new_random();
    let mut new_api = forged_event(intruder, &mock_api("Evil", "/evil", "forged"))?;
    new_api.context = "/evil".into();
    c_inject(&env, &new_api).await?;

    eventually(
        "gw-1 to refuse the three forged events",
        DEADLINE,
        || async {
            Ok((c
                .metric("gw-1", "artisync_gateway_events_unverified_total")
                .await?
                >= 3.0)
                .then_some(()))
        },
    )
    .await?;
    let (status, body) = c.call("gw-1", "/signed/hello").await?;
    ensure!(status == 200 && body.contains("r1"), "{status} {body}");
    let (status, _) = c.call("gw-1", "/evil/hello").await?;
    ensure!(status == 404, "the forged API answered {status}");
    ensure!(c.applied_revision("gw-1", &id).await? == Some(1));
    ensure!(
        c.cache_manifest("gw-1")?.get(&id) != Some(&999_999),
        "the forged revision reached the disk cache"
    );

    // Visible in the admin API ...
    let apis = c.admin_apis("gw-1").await?;
    let listed = apis["apis"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["apiId"] == id.as_str())
        .context("the API is not listed")?;
    ensure!(listed["revision"] == 1, "{listed}");
    let error = listed["error"].as_str().unwrap_or_default();
    ensure!(error.contains("signature"), "admin API: {listed}");
    // ... and in the status the node reports to the publisher.
    eventually("the publisher to show the refusal", DEADLINE, || async {
        let status = c.api_status(&id).await?;
        Ok(status.to_string().contains("signature").then_some(()))
    })
    .await?;

    // The publisher's next change still goes through.
    c.publish(&mock_api("Later", "/later", "l1"), &[PROD])
        .await?;
    eventually("gw-1 to serve a later signed API", DEADLINE, || async {
        Ok((c.call("gw-1", "/later/hello").await?.0 == 200).then_some(()))
    })
    .await?;
    c.stop().await;
    Ok(())
}

async fn c_inject(env: &TestEnv, event: &DeploymentEvent) -> anyhow::Result<()> {
    env.inject("gw-1", &event.to_json()).await
}
