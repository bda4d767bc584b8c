//! The floor: the raw cost of each hop of the propagation path on this
//! machine (a PostgreSQL commit of a 10 KB blob, the same on MariaDB, a
//! persistent RabbitMQ
//! publish to a consumer, a loopback HTTP GET of 10 KB), and etcd's
//! put → watch, the mechanism Apache APISIX propagates configuration with.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use artisync_e2e::amqp_url;
use artisync_test_support::postgres::TestDatabase;
use base64::Engine as _;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use rand::RngCore;

use super::tools::start_etcd;
use super::{Outcome, Stats};

pub const PG: &str = "postgres insert 10KB bytea + commit";
pub const MARIADB: &str = "mariadb insert 10KB blob + commit";
pub const RABBIT: &str = "rabbitmq persistent publish -> receive";
pub const RABBIT_CONFIRM: &str = "rabbitmq persistent publish -> confirm";
pub const HTTP: &str = "http loopback GET 10KB (other process)";
pub const ETCD: &str = "etcd put -> watch event";
pub const FLOOR_SUM_P50: &str = "floor sum p50 (pg + rabbitmq + http)";
pub const FLOOR_SUM_P99: &str = "floor sum p99 (pg + rabbitmq + http)";
pub const FLOOR_SUM_MARIADB_P50: &str = "floor sum p50 (mariadb + rabbitmq + http)";

/// One run of every floor measurement, `iterations` samples each.
pub async fn run(iterations: usize) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let pg = postgres(iterations).await.context("postgres floor")?;
    let mariadb = mariadb(iterations).await.context("mariadb floor")?;
    let (rabbit, confirm) = rabbitmq(iterations).await.context("rabbitmq floor")?;
    let http = http(iterations).await.context("http floor")?;
    out.measure(PG, pg);
    out.measure(MARIADB, mariadb);
    out.measure(RABBIT, rabbit);
    out.measure(RABBIT_CONFIRM, confirm);
    out.measure(HTTP, http);
    match etcd(iterations).await.context("etcd peer")? {
        Some(e) => out.measure(ETCD, e),
        None => out.note("etcd is not installed: no etcd put -> watch figure"),
    }
    out.figure(FLOOR_SUM_P50, pg.p50 + rabbit.p50 + http.p50, "ms");
    out.figure(FLOOR_SUM_P99, pg.p99 + rabbit.p99 + http.p99, "ms");
    out.figure(
        FLOOR_SUM_MARIADB_P50,
        mariadb.p50 + rabbit.p50 + http.p50,
        "ms",
    );
    Ok(out)
}

async fn postgres(iterations: usize) -> anyhow::Result<Stats> {
    let db = TestDatabase::create_empty().await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await?;
    sqlx::query("CREATE TABLE floor_blob (id bigserial PRIMARY KEY, data bytea NOT NULL)")
        .execute(&pool)
        .await?;
    let mut blob = vec![0u8; 10 * 1024];
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 10 {
        rand::rng().fill_bytes(&mut blob);
        let t = Instant::now();
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO floor_blob (data) VALUES ($1)")
            .bind(&blob)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if i >= 10 {
            samples.push(t.elapsed());
        }
    }
    pool.close().await;
    drop(db);
    Ok(Stats::from_durations(&samples))
}

/// The same commit on MariaDB (InnoDB, binary log and redo log flushed at
/// each commit as the server is configured), the MySQL backend's floor.
async fn mariadb(iterations: usize) -> anyhow::Result<Stats> {
    let db = artisync_test_support::mysql::TestDatabase::create_empty().await?;
    let options: sqlx::mysql::MySqlConnectOptions = db.url.parse()?;
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::query(
        "CREATE TABLE floor_blob (id BIGINT AUTO_INCREMENT PRIMARY KEY, data LONGBLOB NOT NULL)
         ENGINE = InnoDB",
    )
    .execute(&pool)
    .await?;
    let mut blob = vec![0u8; 10 * 1024];
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 10 {
        rand::rng().fill_bytes(&mut blob);
        let t = Instant::now();
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO floor_blob (data) VALUES (?)")
            .bind(&blob)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if i >= 10 {
            samples.push(t.elapsed());
        }
    }
    pool.close().await;
    drop(db);
    Ok(Stats::from_durations(&samples))
}

/// Publisher and consumer on separate connections, as the relay and a
/// gateway are; a durable queue and persistent messages with confirms, as
/// the product uses them. Returns (publish → receive, publish → confirm).
async fn rabbitmq(iterations: usize) -> anyhow::Result<(Stats, Stats)> {
    let url = amqp_url();
    let props = lapin::ConnectionProperties::default;
    let pub_conn = lapin::Connection::connect(&url, props()).await?;
    let sub_conn = lapin::Connection::connect(&url, props()).await?;
    let pub_ch = pub_conn.create_channel().await?;
    pub_ch
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let sub_ch = sub_conn.create_channel().await?;
    let queue = format!("artisync.bench.floor.{}", uuid::Uuid::new_v4().simple());
    sub_ch
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut consumer = sub_ch
        .basic_consume(
            queue.as_str().into(),
            "floor".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // About the size of a deployment event.
    let payload = vec![b'x'; 512];
    let mut receive = Vec::with_capacity(iterations);
    let mut confirms = Vec::with_capacity(iterations);
    for i in 0..iterations + 10 {
        let t = Instant::now();
        let confirm = pub_ch
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &payload,
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        let mut confirm = Box::pin(confirm);
        let mut confirmed_at = None;
        let delivery = loop {
            tokio::select! {
                c = &mut confirm, if confirmed_at.is_none() => {
                    c?;
                    confirmed_at = Some(t.elapsed());
                }
                d = consumer.next() => break d,
            }
        };
        let received = t.elapsed();
        let delivery = delivery.context("the consumer ended")??;
        let confirmed = match confirmed_at {
            Some(c) => c,
            None => {
                confirm.await?;
                t.elapsed()
            }
        };
        delivery.acker.ack(BasicAckOptions::default()).await?;
        if i >= 10 {
            receive.push(received);
            confirms.push(confirmed);
        }
    }
    let _ = sub_ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = pub_conn.close(200, "done".into()).await;
    let _ = sub_conn.close(200, "done".into()).await;
    Ok((
        Stats::from_durations(&receive),
        Stats::from_durations(&confirms),
    ))
}

/// The blob server of the HTTP floor, run in a child process (`bench
/// serve-blob`) so the hop crosses processes as gateway → traffic manager
/// does. Prints its port, then serves until killed.
pub async fn serve_blob() -> anyhow::Result<()> {
    let body: &'static [u8] = Box::leak(vec![b'a'; 10 * 1024].into_boxed_slice());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let app = axum::Router::new().fallback(move || async move { body });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn http(iterations: usize) -> anyhow::Result<Stats> {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve-blob")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await?;
    let port: u16 = line.trim().parse().context("the blob server's port")?;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/blob");
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 10 {
        let t = Instant::now();
        let r = client.get(&url).send().await?;
        if !r.status().is_success() {
            bail!("GET answered {}", r.status());
        }
        let bytes = r.bytes().await?;
        if bytes.len() != 10 * 1024 {
            bail!("GET returned {} bytes", bytes.len());
        }
        if i >= 10 {
            samples.push(t.elapsed());
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(Stats::from_durations(&samples))
}

/// etcd put → watch event over etcd's HTTP/JSON gateway (the v3 API that
/// APISIX uses), with the watch opened once and kept.
async fn etcd(iterations: usize) -> anyhow::Result<Option<Stats>> {
    let Some(etcd) = start_etcd().await? else {
        return Ok(None);
    };
    let base = format!("http://127.0.0.1:{}", etcd.port);
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let key = b64(b"/apisix/routes/bench");
    let client = reqwest::Client::new();
    // The gateway may answer 404 for a moment while the member starts.
    let mut ready = false;
    for _ in 0..200 {
        if client
            .post(format!("{base}/v3/kv/range"))
            .json(&serde_json::json!({"key": key}))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !ready {
        bail!("etcd did not answer");
    }
    let watch = client
        .post(format!("{base}/v3/watch"))
        .json(&serde_json::json!({"create_request": {"key": key}}))
        .send()
        .await?;
    let mut stream = watch.bytes_stream();
    let mut buffer = Vec::new();
    // Reads until one complete line holding `needle` has arrived.
    async fn next_line<S>(stream: &mut S, buffer: &mut Vec<u8>, needle: &str) -> anyhow::Result<()>
    where
        S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    {
        loop {
            while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=pos).collect();
                if String::from_utf8_lossy(&line).contains(needle) {
                    return Ok(());
                }
            }
            let chunk = stream.next().await.context("the watch stream ended")??;
            buffer.extend_from_slice(&chunk);
        }
    }
    next_line(&mut stream, &mut buffer, "\"created\"").await?;
    // A value about the size of an artifact.
    let value = b64(&[b'v'; 600]);
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 10 {
        let t = Instant::now();
        let put = client
            .post(format!("{base}/v3/kv/put"))
            .json(&serde_json::json!({"key": key, "value": value}))
            .send();
        let event = async {
            next_line(&mut stream, &mut buffer, "\"events\"")
                .await
                .map(|()| t.elapsed())
        };
        let (put, event) = tokio::join!(put, event);
        let elapsed = event?;
        if !put?.status().is_success() {
            bail!("etcd put failed");
        }
        if i >= 10 {
            samples.push(elapsed);
        }
    }
    drop(stream);
    etcd.stop().await;
    Ok(Some(Stats::from_durations(&samples)))
}
