//! The outbox relay against the real RabbitMQ, on PostgreSQL and on
//! MariaDB (DESIGN.md §4, §5): events committed while the broker is unreachable are delivered in
//! order once it is back, and a relay stopped or killed mid-way and
//! restarted loses none (delivery is at-least-once: duplicates are allowed
//! and counted, never missing events or a first delivery out of order).
//!
//! The relay runs with a 60 s polling fallback, so every delivery within
//! the deadlines below is driven by the commit notification (LISTEN/NOTIFY
//! on PostgreSQL, the in-process notification of local commits on MySQL)
//! or the retry after a broker failure, not by polling.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use artisync_domain::topology::Topology;
use artisync_domain::{ApiId, GatewayLabel, Sha256Digest};
use artisync_e2e::fault::TcpFaultProxy;
use artisync_e2e::{TestEnv, eventually, mock_api};
use artisync_mysql::MySqlBackend;
use artisync_ports::artifacts::{ChangeContext, NewArtifact};
use artisync_ports::{ArtifactStore, Outbox};
use artisync_postgres::PgBackend;
use artisync_publisher::relay::OutboxRelay;
use artisync_rabbitmq::{RabbitPublisher, declare_exchange};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use sqlx::{MySqlPool, PgPool, Row};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const POLL_FALLBACK: Duration = Duration::from_secs(60);
const DEADLINE: Duration = Duration::from_secs(30);

/// One message as the observer queue received it.
#[derive(Debug, Clone)]
struct Received {
    event_id: Uuid,
    routing_key: String,
    sequence: i64,
}

/// An exclusive queue bound to the test's exchange for some labels,
/// recording everything routed to it. The broker deletes it when the
/// connection closes, even if the test fails.
struct Observer {
    conn: lapin::Connection,
    received: Arc<Mutex<Vec<Received>>>,
    problems: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Observer {
    async fn start(env: &TestEnv, labels: &[String]) -> anyhow::Result<Observer> {
        let (conn, channel) = env.amqp_channel().await?;
        declare_exchange(&channel, &env.exchange).await?;
        let queue = format!("{}observer.{}", env.queue_prefix, Uuid::new_v4().simple());
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        for label in labels {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    env.exchange.as_str().into(),
                    label.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "outbox-relay-observer".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (sink, complaints) = (received.clone(), problems.clone());
        let task = tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                match Self::check(&delivery) {
                    Ok((r, issues)) => {
                        complaints
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend(issues);
                        sink.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                    }
                    Err(e) => complaints
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{e:#}")),
                }
            }
        });
        Ok(Observer {
            conn,
            received,
            problems,
            task,
        })
    }

    /// Reads a delivery and lists where it breaks the message contract of
    /// DESIGN.md §5.
    fn check(delivery: &lapin::message::Delivery) -> anyhow::Result<(Received, Vec<String>)> {
        let props = &delivery.properties;
        let payload: serde_json::Value =
            serde_json::from_slice(&delivery.data).context("the body is not JSON")?;
        let event_id: Uuid = payload["eventId"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no eventId in {payload}"))?;
        let routing_key = delivery.routing_key.as_str().to_owned();
        let mut issues = Vec::new();
        if props.content_type().as_ref().map(|c| c.as_str()) != Some("application/json") {
            issues.push(format!(
                "{event_id}: content type {:?}",
                props.content_type()
            ));
        }
        if *props.delivery_mode() != Some(2) {
            issues.push(format!(
                "{event_id}: not persistent: {:?}",
                props.delivery_mode()
            ));
        }
        if props.message_id().as_ref().map(|m| m.as_str().to_owned()) != Some(event_id.to_string())
        {
            issues.push(format!("{event_id}: message_id {:?}", props.message_id()));
        }
        let names_key = payload["gatewayLabels"]
            .as_array()
            .is_some_and(|ls| ls.iter().any(|l| l.as_str() == Some(routing_key.as_str())));
        if !names_key {
            issues.push(format!(
                "{event_id}: routing key {routing_key:?} not among the labels of {payload}"
            ));
        }
        let sequence = payload["sequence"]
            .as_i64()
            .with_context(|| format!("no sequence in {payload}"))?;
        Ok((
            Received {
                event_id,
                routing_key,
                sequence,
            },
            issues,
        ))
    }

    /// Contract violations seen so far.
    fn problems(&self) -> Vec<String> {
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn count(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Closes the queue; fails if any message broke the contract.
    async fn close(self) -> anyhow::Result<()> {
        let problems = self.problems();
        let _ = self.conn.close(200, "test done".into()).await;
        self.task.abort();
        ensure!(
            problems.is_empty(),
            "messages broke the contract: {problems:#?}"
        );
        Ok(())
    }
}

/// Commits deployment events through the publisher's store: each change
/// is a new revision of one API deployed to every label (one outbox row
/// per label).
struct Writer {
    store: Arc<dyn ArtifactStore>,
    api: ApiId,
    revision: u32,
    labels: Vec<GatewayLabel>,
}

fn artifact(xml: &str) -> anyhow::Result<NewArtifact> {
    let parsed = artisync_synapse::parse_artifact(xml.as_bytes())?;
    Ok(NewArtifact {
        name: parsed.api.name.clone(),
        version: parsed.api.version.clone().unwrap_or_default(),
        context: parsed.api.context.clone(),
        xml: xml.as_bytes().to_vec(),
        sha256: Sha256Digest::of(xml.as_bytes()),
    })
}

impl Writer {
    async fn new(db: &Db, labels: &[String]) -> anyhow::Result<Writer> {
        let store = db.store();
        let api = store
            .create_api(artifact(&mock_api("Relay", "/relay", "r1"))?)
            .await?
            .id;
        Ok(Writer {
            store,
            api,
            revision: 1,
            labels: labels
                .iter()
                .map(|l| GatewayLabel::parse(l))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Deploys the current revision, then a new revision for next time;
    /// returns how many events were committed.
    async fn change(&mut self) -> anyhow::Result<usize> {
        let outcome = self
            .store
            .deploy(self.api, &self.labels, None, &ChangeContext::default())
            .await?;
        ensure!(
            outcome.changed_labels.len() == self.labels.len(),
            "every label changed: {outcome:?}"
        );
        self.revision += 1;
        let xml = mock_api("Relay", "/relay", &format!("r{}", self.revision));
        self.store.update_api(self.api, artifact(&xml)?).await?;
        Ok(self.labels.len())
    }

    async fn changes(&mut self, n: usize) -> anyhow::Result<usize> {
        let mut events = 0;
        for _ in 0..n {
            events += self.change().await?;
        }
        Ok(events)
    }
}

/// A relay as the publisher runs it, publishing to `amqp_url`.
fn spawn_relay(db: &Db, amqp_url: &str, env: &TestEnv) -> (CancellationToken, JoinHandle<()>) {
    let topology = Topology {
        exchange: env.exchange.clone(),
        queue_prefix: env.queue_prefix.clone(),
        ..Topology::default()
    };
    let relay = OutboxRelay::new(
        db.outbox(),
        Box::new(RabbitPublisher::new(amqp_url.to_owned(), topology)),
        POLL_FALLBACK,
        Duration::from_secs(24 * 3600),
    );
    let token = CancellationToken::new();
    let task = tokio::spawn(relay.run(token.clone()));
    (token, task)
}

/// Which database the outbox is on.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Postgres,
    MySql,
}

/// The test's database, as the publisher opened it.
#[derive(Clone)]
enum Db {
    Postgres(PgPool),
    MySql(MySqlPool),
}

impl Db {
    /// The publisher's store; its commits wake the relays of this process.
    fn store(&self) -> Arc<dyn ArtifactStore> {
        match self {
            Db::Postgres(pool) => Arc::new(PgBackend::from_pool(pool.clone())),
            Db::MySql(pool) => Arc::new(MySqlBackend::from_pool(pool.clone())),
        }
    }

    fn outbox(&self) -> Arc<dyn Outbox> {
        match self {
            Db::Postgres(pool) => Arc::new(PgBackend::from_pool(pool.clone())),
            Db::MySql(pool) => Arc::new(MySqlBackend::from_pool(pool.clone())),
        }
    }

    /// Marking events sent fails from now on (a trigger raises).
    async fn fail_marking_sent(&self) -> anyhow::Result<()> {
        match self {
            Db::Postgres(pool) => {
                sqlx::query(
                    "CREATE FUNCTION test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'injected failure marking events sent'; END; $$",
                )
                .execute(pool)
                .await?;
                sqlx::query(
                    "CREATE TRIGGER test_fail BEFORE UPDATE ON outbox
                     FOR EACH ROW EXECUTE FUNCTION test_fail()",
                )
                .execute(pool)
                .await?;
            }
            Db::MySql(pool) => {
                sqlx::raw_sql(
                    "CREATE TRIGGER test_fail BEFORE UPDATE ON outbox FOR EACH ROW
                     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected failure marking events sent'",
                )
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    async fn heal_marking_sent(&self) -> anyhow::Result<()> {
        match self {
            Db::Postgres(pool) => {
                sqlx::query("DROP TRIGGER test_fail ON outbox")
                    .execute(pool)
                    .await?;
            }
            Db::MySql(pool) => {
                sqlx::raw_sql("DROP TRIGGER test_fail")
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::MySql(pool) => pool.close().await,
        }
    }
}

async fn setup(kind: Kind) -> anyhow::Result<(TestEnv, Db)> {
    let pool = artisync_postgres::PoolSettings {
        max_connections: 5,
        ..Default::default()
    };
    // Connects and applies the schema, as the publisher does.
    Ok(match kind {
        Kind::Postgres => {
            let env = TestEnv::new().await?;
            let backend =
                PgBackend::connect(artisync_postgres::parse_url(&env.db.url, "test")?, &pool)
                    .await
                    .context("test database")?;
            let pool = backend.pool().clone();
            (env, Db::Postgres(pool))
        }
        Kind::MySql => {
            let env = TestEnv::mysql().await?;
            let backend = MySqlBackend::connect(
                artisync_mysql::parse_url(&env.db.url, "test")?,
                &artisync_mysql::PoolSettings {
                    max_connections: pool.max_connections,
                    ..Default::default()
                },
            )
            .await
            .context("test database")?;
            let pool = backend.pool().clone();
            (env, Db::MySql(pool))
        }
    })
}

fn labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Relay label {i}")).collect()
}

async fn unsent(db: &Db) -> anyhow::Result<i64> {
    const SQL: &str = "SELECT count(*) FROM outbox WHERE sent_at IS NULL";
    Ok(match db {
        Db::Postgres(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await?,
        Db::MySql(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await?,
    })
}

/// event id -> outbox id, for every committed event.
async fn outbox_ids(db: &Db) -> anyhow::Result<HashMap<Uuid, i64>> {
    const SQL: &str = "SELECT event_id, id FROM outbox";
    Ok(match db {
        Db::Postgres(pool) => sqlx::query(SQL)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| (r.get("event_id"), r.get("id")))
            .collect(),
        Db::MySql(pool) => sqlx::query(SQL)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let id: &str = r.get("event_id");
                Ok((id.parse()?, r.get("id")))
            })
            .collect::<anyhow::Result<_>>()?,
    })
}

/// Waits until every committed event reached the observer and is marked
/// sent.
async fn wait_all_delivered(db: &Db, observer: &Observer, what: &str) -> anyhow::Result<()> {
    eventually(what, DEADLINE, || async {
        let committed: HashMap<Uuid, i64> = outbox_ids(db).await?;
        let received = observer.received();
        let all_arrived = committed
            .keys()
            .all(|id| received.iter().any(|r| r.event_id == *id));
        Ok((all_arrived && unsent(db).await? == 0).then_some(()))
    })
    .await
}

/// What a delivery history says: each committed event arrived at least
/// once, first deliveries in commit (outbox id) order, nothing foreign.
/// Returns the number of duplicate deliveries.
fn check_history(received: &[Received], committed: &HashMap<Uuid, i64>) -> anyhow::Result<usize> {
    let mut first_seen: Vec<i64> = Vec::new();
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    let mut last_sequence = i64::MIN;
    for r in received {
        let Some(&id) = committed.get(&r.event_id) else {
            bail!("received an event that was never committed: {r:?}");
        };
        let n = times.entry(id).or_default();
        *n += 1;
        if *n == 1 {
            if let Some(&previous) = first_seen.last() {
                ensure!(
                    id > previous,
                    "outbox row {id} ({r:?}) first arrived after row {previous}: out of order"
                );
            }
            ensure!(
                r.sequence >= last_sequence,
                "sequence {} arrived after {last_sequence}",
                r.sequence
            );
            last_sequence = r.sequence;
            first_seen.push(id);
        }
    }
    let missing: Vec<i64> = committed
        .values()
        .filter(|id| !times.contains_key(id))
        .copied()
        .collect();
    ensure!(
        missing.is_empty(),
        "events never delivered: outbox rows {missing:?}"
    );
    Ok(times.values().map(|n| n - 1).sum())
}

/// True once the proxy answers a new connection by closing it (cut), so
/// the relay's existing connection through it is gone as well.
async fn proxy_refuses(proxy: &TcpFaultProxy) -> anyhow::Result<Option<()>> {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await?;
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(Some(())),
        _ => Ok(None),
    }
}

async fn events_committed_while_the_broker_is_unreachable_arrive_in_order_when_it_is_back(
    kind: Kind,
) -> anyhow::Result<()> {
    let (env, db) = setup(kind).await?;
    let labels = labels(2);
    let observer = Observer::start(&env, &labels).await?;
    let proxy = TcpFaultProxy::start(env.amqp_addr()?).await?;
    let (relay, relay_task) = spawn_relay(&db, &env.amqp_url_through(proxy.addr)?, &env);
    let mut writer = Writer::new(&db, &labels).await?;

    // The relay is connected through the proxy and delivering.
    writer.change().await?;
    wait_all_delivered(&db, &observer, "the first events").await?;
    let before = observer.count();
    assert_eq!(before, labels.len());

    // Broker unreachable: committed events stay unsent.
    proxy.cut();
    eventually("the proxy to refuse", DEADLINE, || proxy_refuses(&proxy)).await?;
    let refused_before = proxy.refused();
    let during = writer.changes(10).await?;
    // The relay tries the broker (and is refused) while the events wait.
    eventually("the relay to retry the broker", DEADLINE, || async {
        Ok((proxy.refused() > refused_before).then_some(()))
    })
    .await?;
    // Watched for a while: nothing gets through, nothing is marked sent.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < watch_until {
        assert_eq!(
            unsent(&db).await?,
            during as i64,
            "events marked sent while the broker was unreachable"
        );
        assert_eq!(
            observer.count(),
            before,
            "events arrived while the broker was unreachable"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Back: all of them arrive, in commit order, and are marked sent.
    proxy.heal();
    wait_all_delivered(&db, &observer, "the events committed during the outage").await?;
    let committed = outbox_ids(&db).await?;
    let received = observer.received();
    let duplicates = check_history(&received, &committed)?;
    // Nothing failed while they were being delivered: each arrived once.
    assert_eq!(duplicates, 0, "{received:?}");
    assert_eq!(received.len(), labels.len() + during);
    // Per routing key as well (each gateway queue sees its label's order).
    for label in &labels {
        let ids: Vec<i64> = received
            .iter()
            .filter(|r| &r.routing_key == label)
            .map(|r| committed[&r.event_id])
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{label}: {ids:?}");
        assert_eq!(ids.len(), 11);
    }

    relay.cancel();
    tokio::time::timeout(DEADLINE, relay_task).await??;
    observer.close().await?;
    db.close().await;
    Ok(())
}

async fn a_relay_stopped_mid_way_and_restarted_loses_no_event(kind: Kind) -> anyhow::Result<()> {
    let (env, db) = setup(kind).await?;
    let labels = labels(3);
    let observer = Observer::start(&env, &labels).await?;
    let mut writer = Writer::new(&db, &labels).await?;

    // A first relay delivers a first part (woken by each commit).
    let (relay, relay_task) = spawn_relay(&db, &env.amqp_url, &env);
    let first = writer.changes(5).await?;
    wait_all_delivered(&db, &observer, "the first part").await?;
    assert_eq!(observer.count(), first);

    // It stops; more is committed while no relay runs.
    relay.cancel();
    tokio::time::timeout(DEADLINE, relay_task).await??;
    let second = writer.changes(5).await?;
    assert_eq!(unsent(&db).await?, second as i64);

    // A new relay sends the rest at start-up.
    let (relay, relay_task) = spawn_relay(&db, &env.amqp_url, &env);
    wait_all_delivered(&db, &observer, "the events committed between the relays").await?;
    // And keeps going with new commits.
    let third = writer.changes(3).await?;
    wait_all_delivered(&db, &observer, "the events after the restart").await?;

    let committed = outbox_ids(&db).await?;
    assert_eq!(committed.len(), first + second + third);
    let received = observer.received();
    let duplicates = check_history(&received, &committed)?;
    eprintln!(
        "stopped relay: {} events, {} deliveries, {duplicates} duplicates",
        committed.len(),
        received.len()
    );
    relay.cancel();
    tokio::time::timeout(DEADLINE, relay_task).await??;
    observer.close().await?;
    db.close().await;
    Ok(())
}

async fn a_relay_killed_mid_batch_and_restarted_loses_no_event(kind: Kind) -> anyhow::Result<()> {
    let (env, db) = setup(kind).await?;
    // 20 labels x 30 changes: 600 events, more than two of the relay's
    // batches, waiting before any relay runs.
    let labels = labels(20);
    let observer = Observer::start(&env, &labels).await?;
    let mut writer = Writer::new(&db, &labels).await?;
    let backlog = writer.changes(30).await?;
    assert_eq!(unsent(&db).await?, backlog as i64);

    // A relay starts on the backlog and is killed (aborted, as in a crash)
    // as soon as the first events arrive: mid-publish or between publishing
    // and marking them sent.
    let (_relay, relay_task) = spawn_relay(&db, &env.amqp_url, &env);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while observer.count() == 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no event arrived within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    relay_task.abort();
    let _ = relay_task.await;
    let at_kill = observer.count();
    let unsent_at_kill = unsent(&db).await?;

    // More commits while no relay runs, then a new relay.
    let more = writer.changes(10).await?;
    let (relay, relay_task) = spawn_relay(&db, &env.amqp_url, &env);
    wait_all_delivered(&db, &observer, "every event after the restart").await?;

    let committed = outbox_ids(&db).await?;
    assert_eq!(committed.len(), backlog + more);
    let received = observer.received();
    let duplicates = check_history(&received, &committed)?;
    eprintln!(
        "killed relay: {} events; {at_kill} delivered and {unsent_at_kill} unsent when killed; \
         {} deliveries in all, {duplicates} duplicates (allowed: at-least-once)",
        committed.len(),
        received.len()
    );
    relay.cancel();
    tokio::time::timeout(DEADLINE, relay_task).await??;
    observer.close().await?;
    db.close().await;
    Ok(())
}

async fn a_relay_that_dies_between_publishing_and_marking_sent_resends_on_restart(
    kind: Kind,
) -> anyhow::Result<()> {
    let (env, db) = setup(kind).await?;
    let labels = labels(10);
    let observer = Observer::start(&env, &labels).await?;
    let mut writer = Writer::new(&db, &labels).await?;
    let backlog = writer.changes(30).await?;

    // Marking events sent fails: the relay publishes a batch, cannot record
    // it, and tries again, the state a crash right after publishing leaves.
    db.fail_marking_sent().await?;
    let (_relay, relay_task) = spawn_relay(&db, &env.amqp_url, &env);
    eventually("a first batch to be published", DEADLINE, || async {
        Ok((observer.count() >= 256).then_some(()))
    })
    .await?;
    relay_task.abort();
    let _ = relay_task.await;
    assert_eq!(
        unsent(&db).await?,
        backlog as i64,
        "nothing can have been marked sent"
    );

    // The database recovers; more is committed; a new relay starts.
    db.heal_marking_sent().await?;
    let more = writer.changes(5).await?;
    let (relay, relay_task) = spawn_relay(&db, &env.amqp_url, &env);
    wait_all_delivered(&db, &observer, "every event after the restart").await?;

    let committed = outbox_ids(&db).await?;
    assert_eq!(committed.len(), backlog + more);
    let received = observer.received();
    let duplicates = check_history(&received, &committed)?;
    // The first batch went out before the crash and again after it.
    assert!(duplicates >= 256, "{duplicates} duplicates");
    eprintln!(
        "relay died before marking sent: {} events, {} deliveries, {duplicates} duplicates \
         (allowed: at-least-once)",
        committed.len(),
        received.len()
    );
    relay.cancel();
    tokio::time::timeout(DEADLINE, relay_task).await??;
    observer.close().await?;
    db.close().await;
    Ok(())
}

/// How many sessions of this test's database hold the relay's lock.
async fn relay_leaders(db: &Db) -> anyhow::Result<i64> {
    Ok(match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                 WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()",
            )
            .fetch_one(pool)
            .await?
        }
        // GET_LOCK locks are named: the relay's is held by one session or
        // by none.
        Db::MySql(pool) => {
            sqlx::query_scalar(
                "SELECT CAST(COUNT(IS_USED_LOCK(CONCAT('artisync_relay_', MD5(DATABASE()))))
                        AS SIGNED)",
            )
            .fetch_one(pool)
            .await?
        }
    })
}

async fn of_two_relays_one_publishes_and_the_other_takes_over_when_it_dies(
    kind: Kind,
) -> anyhow::Result<()> {
    let (env, db) = setup(kind).await?;
    let labels = labels(4);
    let observer = Observer::start(&env, &labels).await?;
    let mut writer = Writer::new(&db, &labels).await?;

    // The first relay leads; the second, started once the first has
    // delivered, stands by.
    let (_first, first_task) = spawn_relay(&db, &env.amqp_url, &env);
    let first = writer.changes(3).await?;
    wait_all_delivered(&db, &observer, "the first part").await?;
    let (second, second_task) = spawn_relay(&db, &env.amqp_url, &env);

    // Both are woken by every commit; one publishes, so the events still
    // arrive in order.
    let both = writer.changes(40).await?;
    wait_all_delivered(&db, &observer, "the events while both relays run").await?;
    assert_eq!(relay_leaders(&db).await?, 1, "exactly one relay leads");

    // The leader dies (aborted, as in a crash): its session ends, and the
    // standby takes over for what is committed next.
    first_task.abort();
    let _ = first_task.await;
    let after = writer.changes(10).await?;
    wait_all_delivered(&db, &observer, "the events after the leader died").await?;
    assert_eq!(relay_leaders(&db).await?, 1, "the standby leads now");

    let committed = outbox_ids(&db).await?;
    assert_eq!(committed.len(), first + both + after);
    let received = observer.received();
    let duplicates = check_history(&received, &committed)?;
    eprintln!(
        "two relays: {} events, {} deliveries, {duplicates} duplicates",
        committed.len(),
        received.len()
    );
    second.cancel();
    tokio::time::timeout(DEADLINE, second_task).await??;
    assert_eq!(
        relay_leaders(&db).await?,
        0,
        "a relay that stops releases the lead"
    );
    observer.close().await?;
    db.close().await;
    Ok(())
}

macro_rules! on_every_database {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() -> anyhow::Result<()> {
                    super::$scenario(super::Kind::Postgres).await
                }
            )*
        }
        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() -> anyhow::Result<()> {
                    super::$scenario(super::Kind::MySql).await
                }
            )*
        }
    };
}

on_every_database!(
    events_committed_while_the_broker_is_unreachable_arrive_in_order_when_it_is_back,
    a_relay_stopped_mid_way_and_restarted_loses_no_event,
    a_relay_killed_mid_batch_and_restarted_loses_no_event,
    a_relay_that_dies_between_publishing_and_marking_sent_resends_on_restart,
    of_two_relays_one_publishes_and_the_other_takes_over_when_it_dies,
);
