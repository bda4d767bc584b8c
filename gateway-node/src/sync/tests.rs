//! Tests of the synchronizer against a scripted artifact source.

use std::collections::VecDeque;
use std::time::Instant;

use artisync_domain::event::{DeploymentEvent, EventType};
use artisync_domain::runtime::{ApiDeploymentStatus, GatewayStatusReport, RuntimeArtifact};
use artisync_ports::source::{FetchedArtifact, MetadataAnswer};
use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::mpsc;

use super::*;
use crate::cache::DiskCache;

/// Answers artifact requests from a script; the rest is unused here.
struct ScriptedSource {
    answers: Mutex<VecDeque<Option<FetchedArtifact>>>,
    fetches: Mutex<u32>,
    /// When each fetch was asked for.
    fetched_at: Mutex<Vec<Instant>>,
}

#[async_trait]
impl ArtifactSource for ScriptedSource {
    async fn metadata(
        &self,
        _: &[GatewayLabel],
        _: Option<&str>,
    ) -> Result<MetadataAnswer, SourceError> {
        // Nothing desired yet, as of change 0.
        Ok(MetadataAnswer::Changed {
            etag: None,
            metadata: RuntimeMetadata {
                sequence: 0,
                apis: Vec::new(),
            },
        })
    }

    async fn artifact(
        &self,
        _: ApiId,
        _: &[GatewayLabel],
        _: Option<&str>,
    ) -> Result<Option<FetchedArtifact>, SourceError> {
        *self.fetches.lock().unwrap() += 1;
        self.fetched_at.lock().unwrap().push(Instant::now());
        let mut answers = self.answers.lock().unwrap();
        // The last answer repeats.
        let answer = if answers.len() > 1 {
            answers.pop_front()
        } else {
            answers.front().cloned()
        };
        Ok(answer.flatten())
    }

    async fn bulk(
        &self,
        _: &[GatewayLabel],
        _: Option<Vec<ApiId>>,
        _: mpsc::Sender<RuntimeArtifact>,
    ) -> Result<usize, SourceError> {
        Ok(0)
    }

    async fn report(&self, _: &GatewayStatusReport) -> Result<(), SourceError> {
        Ok(())
    }
}

/// The cache writer may still be writing its last batch (on a blocking
/// thread) when a test ends, so removal is retried until it sticks.
async fn remove_cache_dir(dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cannot remove {}: {e}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn artifact(revision: i64) -> FetchedArtifact {
    let xml = Bytes::from(format!(
        r#"<api xmlns="http://ws.apache.org/ns/synapse" name="A" context="/a"><resource methods="GET"><inSequence><property name="r" value="{revision}"/><respond/></inSequence></resource></api>"#
    ));
    FetchedArtifact {
        revision: Revision::new(revision).unwrap(),
        sha256: Sha256Digest::of(&xml),
        xml,
    }
}

fn synchronizer(
    answers: Vec<Option<FetchedArtifact>>,
) -> (Arc<Synchronizer>, Arc<ScriptedSource>, std::path::PathBuf) {
    waiting_synchronizer(answers, Duration::ZERO)
}

/// A synchronizer with `event_waiting_time = wait`.
fn waiting_synchronizer(
    answers: Vec<Option<FetchedArtifact>>,
    wait: Duration,
) -> (Arc<Synchronizer>, Arc<ScriptedSource>, std::path::PathBuf) {
    configured_synchronizer(answers, wait, None)
}

fn configured_synchronizer(
    answers: Vec<Option<FetchedArtifact>>,
    wait: Duration,
    publisher_key: Option<PublisherPublicKey>,
) -> (Arc<Synchronizer>, Arc<ScriptedSource>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("artisync-sync-{}", uuid::Uuid::new_v4()));
    let cache = DiskCache::new(dir.clone());
    cache.prepare().unwrap();
    let (writer, _) = CacheWriter::spawn(cache);
    let source = Arc::new(ScriptedSource {
        answers: Mutex::new(answers.into()),
        fetches: Mutex::new(0),
        fetched_at: Mutex::new(Vec::new()),
    });
    let sync = Synchronizer::new(
        SyncConfig {
            node_id: NodeId::parse("gw-test").unwrap(),
            labels: vec![GatewayLabel::parse("Label1").unwrap()],
            retry: crate::config::RetryPolicy {
                first_delay: Duration::from_millis(10),
                max_delay: Duration::from_secs(1),
                max_retries: 2,
            },
            event_waiting_time: wait,
            publisher_key,
        },
        source.clone(),
        Arc::new(NodeState::new()),
        writer,
        Arc::new(Metrics::new()),
    );
    (sync, source, dir)
}

#[tokio::test]
async fn a_lagging_source_does_not_swallow_an_announced_revision() {
    // The node runs revision 1; the event announces 2; the source
    // still serves 1 twice (a replica behind), then 2.
    let (sync, source, dir) = synchronizer(vec![
        Some(artifact(1)),
        Some(artifact(1)),
        Some(artifact(1)),
        Some(artifact(2)),
    ]);
    let id = ApiId::new_random();
    assert_eq!(
        sync.sync_api(id, Some(Revision::FIRST), None)
            .await
            .unwrap(),
        Outcome::Deployed(Revision::FIRST)
    );
    let outcome = sync
        .sync_api(id, Some(Revision::new(2).unwrap()), None)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Deployed(Revision::new(2).unwrap()));
    assert_eq!(*source.fetches.lock().unwrap(), 4);
    remove_cache_dir(&dir).await;
}

#[tokio::test]
async fn an_install_never_replaces_a_newer_revision() {
    let (sync, _, dir) = synchronizer(vec![None]);
    let id = ApiId::new_random();
    let compiled = |r: i64| {
        let a = artifact(r);
        sync.verify_and_compile(id, a.revision, a.sha256, a.xml)
            .unwrap()
    };
    assert!(sync.state.install(id, compiled(2)));
    assert!(!sync.state.install(id, compiled(1)), "older is refused");
    assert_eq!(
        sync.state.record(&id).and_then(|r| r.applied_revision()),
        Revision::new(2).ok()
    );
    assert!(sync.state.install(id, compiled(2)), "same is allowed");
    remove_cache_dir(&dir).await;
}

fn deploy_event(id: ApiId, a: &FetchedArtifact, age: chrono::Duration) -> DeploymentEvent {
    DeploymentEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: EventType::DeployApiInGateway,
        timestamp: Utc::now() - age,
        api_id: id,
        name: "A".into(),
        version: String::new(),
        context: "/a".into(),
        revision: a.revision,
        sha256: a.sha256,
        gateway_labels: vec![GatewayLabel::parse("Label1").unwrap()],
        sequence: 1,
        artifact: Some(String::from_utf8(a.xml.to_vec()).unwrap()),
        signature: None,
    }
}

fn applied(sync: &Synchronizer, id: ApiId) -> Option<Revision> {
    sync.state.record(&id).and_then(|r| r.applied_revision())
}

#[tokio::test]
async fn a_fresh_event_with_its_artifact_deploys_without_a_fetch() {
    let (sync, source, dir) = synchronizer(vec![Some(artifact(1))]);
    sync.reconcile().await.unwrap();
    let id = ApiId::new_random();
    let event = deploy_event(id, &artifact(2), chrono::Duration::zero());
    sync.handle_event(&event, None).await;
    assert_eq!(applied(&sync, id), Revision::new(2).ok());
    assert_eq!(*source.fetches.lock().unwrap(), 0);
    remove_cache_dir(&dir).await;
}

#[tokio::test]
async fn an_inline_artifact_that_fails_its_digest_is_fetched_instead() {
    let (sync, source, dir) = synchronizer(vec![Some(artifact(2))]);
    sync.reconcile().await.unwrap();
    let id = ApiId::new_random();
    let mut event = deploy_event(id, &artifact(2), chrono::Duration::zero());
    event.artifact = Some(String::from_utf8(artifact(3).xml.to_vec()).unwrap());
    sync.handle_event(&event, None).await;
    // The first attempt fails on the digest; the retry fetches.
    eventually_applied(&sync, id, Revision::new(2).unwrap()).await;
    assert_eq!(applied(&sync, id), Revision::new(2).ok());
    assert_eq!(*source.fetches.lock().unwrap(), 1);
    remove_cache_dir(&dir).await;
}

#[tokio::test]
async fn events_before_the_first_load_or_not_newer_than_it_ask_the_source() {
    // Replayed from a backlog: the API has been undeployed since.
    let (sync, source, dir) = synchronizer(vec![None]);
    let id = ApiId::new_random();
    let mut event = deploy_event(id, &artifact(2), chrono::Duration::zero());
    sync.handle_event(&event, None).await;
    assert_eq!(applied(&sync, id), None, "no desired state loaded yet");
    assert_eq!(*source.fetches.lock().unwrap(), 1);

    sync.reconcile().await.unwrap();
    event.sequence = 0;
    sync.handle_event(&event, None).await;
    assert_eq!(applied(&sync, id), None, "the load already saw change 0");
    assert_eq!(*source.fetches.lock().unwrap(), 2);
    remove_cache_dir(&dir).await;
}

#[tokio::test]
async fn an_old_event_asks_the_source_instead_of_using_its_artifact() {
    // Replayed from a backlog: the API has been undeployed since.
    let (sync, source, dir) = synchronizer(vec![None]);
    sync.reconcile().await.unwrap();
    let id = ApiId::new_random();
    let event = deploy_event(id, &artifact(2), chrono::Duration::seconds(60));
    sync.handle_event(&event, None).await;
    assert_eq!(applied(&sync, id), None);
    assert_eq!(*source.fetches.lock().unwrap(), 1);
    remove_cache_dir(&dir).await;
}

async fn eventually_applied(sync: &Synchronizer, id: ApiId, revision: Revision) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while applied(sync, id) != Some(revision) {
        assert!(
            Instant::now() < deadline,
            "revision {revision} never applied"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_event_waits_event_waiting_time_before_the_fetch() {
    let wait = Duration::from_millis(300);
    let (sync, source, dir) = waiting_synchronizer(vec![Some(artifact(2))], wait);
    sync.reconcile().await.unwrap();
    let id = ApiId::new_random();
    let mut event = deploy_event(id, &artifact(2), chrono::Duration::zero());
    // Too large to travel inside the event: the node must fetch it.
    event.artifact = None;
    let received = Instant::now();
    sync.handle_event(&event, None).await;
    assert_eq!(applied(&sync, id), Revision::new(2).ok());
    let fetched_at = source.fetched_at.lock().unwrap().clone();
    assert_eq!(fetched_at.len(), 1);
    assert!(
        fetched_at[0].duration_since(received) >= wait,
        "fetched {:?} after the event, before event_waiting_time",
        fetched_at[0].duration_since(received)
    );
    remove_cache_dir(&dir).await;
}

#[tokio::test]
async fn a_removal_waits_too_before_asking_the_source() {
    let wait = Duration::from_millis(200);
    let (sync, source, dir) = waiting_synchronizer(vec![None], wait);
    sync.reconcile().await.unwrap();
    let id = ApiId::new_random();
    let mut event = deploy_event(id, &artifact(1), chrono::Duration::zero());
    event.event_type = EventType::RemoveApiFromGateway;
    event.artifact = None;
    let received = Instant::now();
    sync.handle_event(&event, None).await;
    let fetched_at = source.fetched_at.lock().unwrap().clone();
    assert_eq!(fetched_at.len(), 1);
    assert!(fetched_at[0].duration_since(received) >= wait);
    remove_cache_dir(&dir).await;
}

#[tokio::test]
async fn an_event_with_its_artifact_needs_no_fetch_and_no_wait() {
    // A wait far longer than the test's deadline: the deploy must not
    // sit through it.
    let (sync, source, dir) =
        waiting_synchronizer(vec![Some(artifact(1))], Duration::from_secs(600));
    sync.reconcile().await.unwrap();
    let id = ApiId::new_random();
    let event = deploy_event(id, &artifact(2), chrono::Duration::zero());
    tokio::time::timeout(Duration::from_secs(30), sync.handle_event(&event, None))
        .await
        .expect("the inline deploy waited for event_waiting_time");
    assert_eq!(applied(&sync, id), Revision::new(2).ok());
    assert_eq!(*source.fetches.lock().unwrap(), 0);
    remove_cache_dir(&dir).await;
}

#[tokio::test]
async fn an_event_stamped_in_the_future_is_not_fresh() {
    let (sync, source, dir) = synchronizer(vec![None]);
    sync.reconcile().await.unwrap();
    let id = ApiId::new_random();
    // An hour ahead: not the publisher's clock; the source is asked, and it
    // has nothing for the API.
    let event = deploy_event(id, &artifact(9), chrono::Duration::hours(-1));
    sync.handle_event(&event, None).await;
    assert_eq!(applied(&sync, id), None);
    assert_eq!(*source.fetches.lock().unwrap(), 1);
    // Within the clock skew, it still is.
    let (sync, source, dir2) = synchronizer(vec![None]);
    sync.reconcile().await.unwrap();
    let event = deploy_event(id, &artifact(2), chrono::Duration::milliseconds(-500));
    sync.handle_event(&event, None).await;
    assert_eq!(applied(&sync, id), Revision::new(2).ok());
    assert_eq!(*source.fetches.lock().unwrap(), 0);
    remove_cache_dir(&dir).await;
    remove_cache_dir(&dir2).await;
}

fn runtime_api(id: ApiId, a: &FetchedArtifact) -> artisync_domain::runtime::RuntimeApi {
    artisync_domain::runtime::RuntimeApi {
        api_id: id,
        name: "A".into(),
        version: String::new(),
        context: "/a".into(),
        revision: a.revision,
        sha256: a.sha256,
        labels: vec![GatewayLabel::parse("Label1").unwrap()],
    }
}

#[tokio::test]
async fn reconcile_corrects_a_revision_newer_than_desired_once_the_source_cannot_be_lagging() {
    let (sync, _, dir) = synchronizer(vec![None]);
    let id = ApiId::new_random();
    let forged = artifact(9);
    sync.state.install(
        id,
        sync.verify_and_compile(id, forged.revision, forged.sha256, forged.xml)
            .unwrap(),
    );
    let metadata = RuntimeMetadata {
        sequence: 3,
        apis: vec![runtime_api(id, &artifact(2))],
    };
    let records = sync.state.records_snapshot();
    // Just applied: the source may be a replica behind the event.
    let plan = ReconcilePlan::of(&metadata, &records, Utc::now());
    assert!(
        plan.correct.is_empty() && plan.deploy.is_empty(),
        "{plan:?}"
    );
    // Longer ago than any lag: revision 9 was never deployed.
    let later = Utc::now()
        + chrono::Duration::from_std(reconcile::SOURCE_LAG_GRACE).unwrap()
        + chrono::Duration::seconds(1);
    let plan = ReconcilePlan::of(&metadata, &records, later);
    assert_eq!(plan.correct, vec![runtime_api(id, &artifact(2))]);
    assert_eq!(plan.drift(), 1);
    remove_cache_dir(&dir).await;
}

#[tokio::test]
async fn redeploy_moves_to_the_desired_revision_even_when_it_is_older() {
    // The node runs a revision 9 the source never had; the source says 2.
    let (sync, source, dir) = synchronizer(vec![Some(artifact(2))]);
    let id = ApiId::new_random();
    let forged = artifact(9);
    sync.state.install(
        id,
        sync.verify_and_compile(id, forged.revision, forged.sha256, forged.xml)
            .unwrap(),
    );
    let outcome = sync.redeploy(id).await.unwrap();
    assert_eq!(outcome, Outcome::Deployed(Revision::new(2).unwrap()));
    assert_eq!(applied(&sync, id), Revision::new(2).ok());
    // Asked again, it is up to date.
    assert_eq!(sync.redeploy(id).await.unwrap(), Outcome::UpToDate);
    assert_eq!(*source.fetches.lock().unwrap(), 2);
    remove_cache_dir(&dir).await;
}

#[tokio::test]
async fn with_a_publisher_key_only_signed_events_are_used() {
    use artisync_domain::signature::EventSigningKey;
    let key = EventSigningKey::from_seed([5; 32]);
    let public = PublisherPublicKey::parse(&key.public_key_base64()).unwrap();
    let (sync, source, dir) = configured_synchronizer(vec![None], Duration::ZERO, Some(public));
    sync.reconcile().await.unwrap();
    let id = ApiId::new_random();

    // Unsigned, and signed by someone else: neither deployed nor fetched,
    // and the refusal shows on the API.
    let forged = deploy_event(id, &artifact(9), chrono::Duration::zero());
    sync.handle_event(&forged, None).await;
    let mut wrongly_signed = forged.clone();
    EventSigningKey::from_seed([6; 32]).sign(&mut wrongly_signed);
    sync.handle_event(&wrongly_signed, None).await;
    assert_eq!(applied(&sync, id), None);
    assert_eq!(*source.fetches.lock().unwrap(), 0);
    assert_eq!(sync.metrics.events_unverified.get(), 2);
    let record = sync.state.record(&id).unwrap();
    assert_eq!(record.status(), ApiDeploymentStatus::Failed);
    assert!(record.failure.unwrap().error.contains("signature"));

    // Signed by the publisher: deployed from the event.
    let mut signed = deploy_event(id, &artifact(2), chrono::Duration::zero());
    key.sign(&mut signed);
    sync.handle_event(&signed, None).await;
    assert_eq!(applied(&sync, id), Revision::new(2).ok());
    assert_eq!(
        sync.state.record(&id).unwrap().status(),
        ApiDeploymentStatus::Deployed
    );
    remove_cache_dir(&dir).await;
}
