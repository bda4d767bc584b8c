//! WSO2's `event_waiting_time` on the real gateway binary: after an event,
//! the node waits that long before it fetches the artifact (so that a
//! database replica behind the traffic manager has the change), and not
//! for an artifact the event carries.

use std::time::{Duration, Instant};

use anyhow::ensure;
use artisync_e2e::{TestEnv, eventually, mock_api, too_large_to_inline};

const LABEL: &str = "Production and Sandbox";
const WAIT: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_gateway_fetches_only_event_waiting_time_after_the_event() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut gw = env.gateway("gw-wait", &[LABEL])?;
    gw.event_waiting_time_ms = WAIT.as_millis() as u64;
    let c = env.start(vec![gw]).await?;

    // Too large to travel in its event: the node fetches it.
    let deployed = Instant::now();
    let id = c
        .publish(
            &too_large_to_inline(&mock_api("Waited", "/waited", "w1")),
            &[LABEL],
        )
        .await?;
    let serving = eventually(
        "gw-wait to serve the API",
        Duration::from_secs(20),
        || async { Ok((c.call("gw-wait", "/waited/hello").await?.0 == 200).then(Instant::now)) },
    )
    .await?;
    let after = serving.duration_since(deployed);
    ensure!(
        after >= WAIT,
        "served {after:?} after the deploy, before event_waiting_time ({WAIT:?})"
    );
    assert_eq!(c.applied_revision("gw-wait", &id).await?, Some(1));

    // A small artifact rides in its event: deployed from it, no fetch, no
    // wait. (Only that it arrives is asserted; timings are the unit tests'.)
    c.publish(&mock_api("Inline", "/inline", "i1"), &[LABEL])
        .await?;
    eventually(
        "gw-wait to serve the inline API",
        Duration::from_secs(20),
        || async { Ok((c.call("gw-wait", "/inline/hello").await?.0 == 200).then_some(())) },
    )
    .await?;
    c.stop().await;
    Ok(())
}
