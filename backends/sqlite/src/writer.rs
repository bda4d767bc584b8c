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
    /// A change nobody waits for: it joins the next group, or commits alone
    /// after [`DEFER_AT_MOST`].
    Deferred(Pending),
    Close(oneshot::Sender<()>),
}

/// How long a deferred change waits for company before it commits alone.
const DEFER_AT_MOST: std::time::Duration = std::time::Duration::from_millis(100);

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

    /// Runs `change` with the next group of changes, without waiting for it
    /// (it pays no sync of its own unless nothing else comes within
    /// [`DEFER_AT_MOST`]). For writes whose loss in a crash only means doing
    /// them again.
    pub fn defer<F>(&self, change: F)
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, crate::error::Result<()>>
            + Send
            + 'static,
    {
        let job: Job = Box::new(move |connection| {
            Box::pin(async move {
                let result = change(connection).await;
                if let Err(e) = &result {
                    tracing::warn!(error = ?e, "a deferred database write failed");
                }
                let finish: Finish = Box::new(|_| {});
                Done {
                    ok: result.is_ok(),
                    finish,
                }
            })
        });
        let pending = Pending {
            job,
            abort: Box::new(|_| {}),
            outbox: false,
        };
        if self.queue.try_send(Command::Deferred(pending)).is_err() {
            tracing::warn!("the database writer is busy; a deferred write is skipped");
        }
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
    let mut deferred: Vec<Pending> = Vec::new();
    loop {
        let received = if deferred.is_empty() {
            commands.recv_many(&mut batch, MAX_GROUP).await
        } else {
            match tokio::time::timeout(DEFER_AT_MOST, commands.recv_many(&mut batch, MAX_GROUP))
                .await
            {
                Ok(n) => n,
                // Nothing came: the deferred changes commit alone.
                Err(_) => usize::MAX,
            }
        };
        if received == 0 {
            break;
        }
        let mut jobs = std::mem::take(&mut deferred);
        let mut waited = false;
        let mut close = None;
        for command in batch.drain(..) {
            match command {
                Command::Change(pending) => {
                    waited = true;
                    jobs.push(pending);
                }
                Command::Deferred(pending) => jobs.push(pending),
                Command::Close(done) => close = Some(done),
            }
        }
        if !waited && close.is_none() && received != usize::MAX {
            // Only deferred changes so far: wait for company.
            deferred = jobs;
            continue;
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
    if !deferred.is_empty() {
        commit_group(&mut connection, deferred).await;
    }
    let _ = connection.close().await;
}

/// One transaction for all `jobs`; answers whether a successful one wrote
/// outbox rows. The transaction's own statements ride with the first and
/// the last change's savepoint statements: a group of one costs two round
/// trips besides the change's own.
async fn commit_group(connection: &mut SqliteConnection, jobs: Vec<Pending>) -> bool {
    let count = jobs.len();
    let mut finishes: Vec<Finish> = Vec::with_capacity(count);
    let mut wrote_outbox = false;
    let mut jobs = jobs.into_iter().enumerate();
    let mut commit = Ok(());
    while let Some((i, pending)) = jobs.next() {
        let open = if i == 0 {
            "BEGIN IMMEDIATE; SAVEPOINT change"
        } else {
            "SAVEPOINT change"
        };
        let opened = sqlx::raw_sql(open).execute(&mut *connection).await;
        let last = i + 1 == count;
        let closed = match opened {
            Ok(_) => {
                let done = (pending.job)(connection).await;
                let close = match (done.ok, last) {
                    (true, false) => "RELEASE change",
                    (false, false) => "ROLLBACK TO change; RELEASE change",
                    (true, true) => "RELEASE change; COMMIT",
                    (false, true) => "ROLLBACK TO change; RELEASE change; COMMIT",
                };
                wrote_outbox |= done.ok && pending.outbox;
                finishes.push(done.finish);
                sqlx::raw_sql(close).execute(&mut *connection).await
            }
            Err(e) => {
                finishes.push(pending.abort);
                Err(e)
            }
        };
        if let Err(e) = closed {
            // The transaction is in an unknown state (or the commit
            // failed): roll it all back and fail every change of the group.
            let e = error::db(e);
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await;
            for (_, pending) in jobs.by_ref() {
                (pending.abort)(Err(e.clone()));
            }
            wrote_outbox = false;
            commit = Err(e);
            break;
        }
    }
    for finish in finishes {
        finish(commit.clone());
    }
    wrote_outbox
}
