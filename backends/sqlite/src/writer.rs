//! The one writer: a task that owns the only write connection and commits
//! whatever waits in one transaction (group commit). Each change runs in
//! its own savepoint, so a change that fails rolls back alone; each is
//! answered only once the transaction that holds it is durable.

use artisync_ports::StoreError;
use futures_util::future::BoxFuture;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{self, BACKEND};

/// The most changes committed together.
const MAX_GROUP: usize = 128;

/// Answers a change once its transaction committed (or failed).
type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// What a job did: whether it succeeded (else its savepoint is rolled
/// back), and how to answer it.
struct Done {
    ok: bool,
    finish: Finish,
}

type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Done> + Send>;

/// A change waiting for the writer.
struct Pending {
    job: Job,
    /// Answers the change with an error without running it (its
    /// transaction could not begin).
    abort: Finish,
    /// Whether the change writes outbox rows (the relay is woken).
    outbox: bool,
}

enum Command {
    Change(Pending),
    Close(oneshot::Sender<()>),
}

#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Command>,
}

fn stopped() -> StoreError {
    StoreError::unavailable(BACKEND, "the database writer has stopped")
}

impl Writer {
    pub fn spawn(connection: SqliteConnection, outbox_commits: watch::Sender<u64>) -> Writer {
        let (queue, commands) = mpsc::channel(4096);
        tokio::spawn(run(connection, commands, outbox_commits));
        Writer { queue }
    }

    /// Runs `change` in the writer's transaction; answers once committed.
    pub async fn write<T, F>(&self, outbox: bool, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, crate::error::Result<T>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, StoreError>>();
        let reply = std::sync::Arc::new(std::sync::Mutex::new(Some(reply)));
        let send = |reply: &std::sync::Mutex<Option<oneshot::Sender<Result<T, StoreError>>>>,
                    answer: Result<T, StoreError>| {
            if let Some(tx) = reply.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(answer);
            }
        };
        let aborted = reply.clone();
        let abort: Finish = Box::new(move |commit| {
            send(&aborted, Err(commit.err().unwrap_or_else(stopped)));
        });
        let job: Job = Box::new(move |connection| {
            Box::pin(async move {
                let result = change(connection).await;
                let ok = result.is_ok();
                let finish: Finish = Box::new(move |commit| {
                    let answer = match (result, commit) {
                        (Err(e), _) => Err(e.into()),
                        (Ok(_), Err(e)) => Err(e),
                        (Ok(value), Ok(())) => Ok(value),
                    };
                    send(&reply, answer);
                });
                Done { ok, finish }
            })
        });
        self.queue
            .send(Command::Change(Pending { job, abort, outbox }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Commits what is queued, then closes the connection.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Command::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    mut connection: SqliteConnection,
    mut commands: mpsc::Receiver<Command>,
    outbox_commits: watch::Sender<u64>,
) {
    let mut batch = Vec::with_capacity(MAX_GROUP);
    while commands.recv_many(&mut batch, MAX_GROUP).await > 0 {
        let mut jobs = Vec::with_capacity(batch.len());
        let mut close = None;
        for command in batch.drain(..) {
            match command {
                Command::Change(pending) => jobs.push(pending),
                Command::Close(done) => close = Some(done),
            }
        }
        if !jobs.is_empty() {
            let wrote_outbox = commit_group(&mut connection, jobs).await;
            if wrote_outbox {
                outbox_commits.send_modify(|n| *n += 1);
            }
        }
        if let Some(done) = close {
            let _ = connection.close().await;
            let _ = done.send(());
            return;
        }
    }
    let _ = connection.close().await;
}

/// One transaction for all `jobs`; answers whether a successful one wrote
/// outbox rows.
async fn commit_group(connection: &mut SqliteConnection, jobs: Vec<Pending>) -> bool {
    if let Err(e) = sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut *connection)
        .await
    {
        let e = error::db(e);
        tracing::error!(error = %e, "cannot begin a database transaction");
        for pending in jobs {
            (pending.abort)(Err(e.clone()));
        }
        return false;
    }
    let mut finishes: Vec<Finish> = Vec::with_capacity(jobs.len());
    let mut wrote_outbox = false;
    let mut jobs = jobs.into_iter();
    while let Some(pending) = jobs.next() {
        let savepoint = sqlx::raw_sql("SAVEPOINT change")
            .execute(&mut *connection)
            .await;
        let closed = match savepoint {
            Ok(_) => {
                let done = (pending.job)(connection).await;
                let closed = if done.ok {
                    sqlx::raw_sql("RELEASE change")
                        .execute(&mut *connection)
                        .await
                } else {
                    sqlx::raw_sql("ROLLBACK TO change; RELEASE change")
                        .execute(&mut *connection)
                        .await
                };
                wrote_outbox |= done.ok && pending.outbox;
                finishes.push(done.finish);
                closed
            }
            Err(e) => {
                finishes.push(pending.abort);
                Err(e)
            }
        };
        if let Err(e) = closed {
            // The transaction is in an unknown state: roll it all back and
            // fail every change of the group.
            let e = error::db(e);
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await;
            for finish in finishes {
                finish(Err(e.clone()));
            }
            for pending in jobs {
                (pending.abort)(Err(e.clone()));
            }
            return false;
        }
    }
    let commit = sqlx::raw_sql("COMMIT")
        .execute(&mut *connection)
        .await
        .map(|_| ())
        .map_err(error::db);
    if commit.is_err() {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await;
        wrote_outbox = false;
    }
    for finish in finishes {
        finish(commit.clone());
    }
    wrote_outbox
}
