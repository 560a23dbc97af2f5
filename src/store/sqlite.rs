//! The embedded store: one SQLite file in WAL mode with `synchronous = FULL`.
//!
//! All writes go through one writer thread that commits whatever has queued up in a single
//! transaction (group commit), so many concurrent webhooks share one fsync. When one
//! request of a batch fails, the batch is applied again a request at a time, so it fails
//! alone. After the commit the writer hands each new delivery to the delivery stage, then
//! replies. Replies are sent only after the commit, so a duplicate that arrives while its
//! first copy is being committed is answered after the first copy is durable. Reads use
//! their own connection.
//!
//! Bodies of [`bodies::IN_FILE_FROM`] bytes or more are kept in files of their own
//! ([`bodies`]). What operators read and change is in [`inspect`] and [`replay`].

mod bodies;
mod inspect;
mod lock;
#[cfg(test)]
mod operator_tests;
mod replay;
#[cfg(test)]
mod test_support;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{CachedStatement, Connection, OptionalExtension, Transaction, params};
use tokio::sync::{mpsc, oneshot};

use super::inspect::{
    DeliveryQuery, DeliveryView, EventDetail, EventQuery, EventSummary, RetriedAll, RetryFilter,
    RetryOne,
};
use super::{
    Accepted, AttemptRecord, Committed, DueDelivery, NewEvent, Next, Purged, QueueDepth, Store,
    StoreError, now_ms,
};
use bodies::{Bodies, IN_FILE_FROM, Unread};

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 512;
/// Requests waiting for the writer before senders wait too.
const QUEUE: usize = 8 * MAX_BATCH;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Pending>,
    reader: Arc<Mutex<Connection>>,
    sink: Sink,
    observer: Observer,
    bodies: Arc<Bodies>,
    /// Held while the store is open, here and by the writer thread.
    _lock: Arc<std::fs::File>,
}

/// Where the writer hands new deliveries after each commit, once one is set.
type Sink = Arc<OnceLock<Arc<dyn Committed>>>;

/// Told of each commit, once set: how many requests it took, and how long.
#[derive(Clone, Default)]
struct Observer(Arc<OnceLock<Box<Observe>>>);

/// Called with the requests a commit took and its time.
type Observe = dyn Fn(usize, Duration) + Send + Sync;

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.get().is_some();
        f.debug_struct("Observer").field("set", &set).finish()
    }
}

enum Op {
    Accept {
        /// The id the event gets unless it is a duplicate.
        id: String,
        event: NewEvent,
        /// Its body is already written to its own file, and the row keeps only its size.
        in_file: bool,
    },
    Record(AttemptRecord),
    Purge {
        delivered_before: i64,
    },
    /// A write that changes nothing: proves the writer thread can commit.
    Ping,
    Retry(i64),
    RetryAll(RetryFilter),
    Pause {
        upstream: String,
        paused: bool,
    },
}

enum Done {
    Accepted(Accepted),
    Recorded,
    /// With the events whose body files go once the purge is committed.
    Purged(Purged, Vec<String>),
    Pinged,
    Retried(RetryOne),
    RetriedAll(RetriedAll),
}

/// Rows removed from the store per purge pass, so one pass never holds the writer long.
const PURGE_BATCH: i64 = 2_000;

struct Pending {
    op: Op,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("{}: {e}", dir.display())))?;
        }
        create_private(path)?;
        // First the lock, so that a second gateway changes nothing of a store in use. Both
        // it and the bodies are found beside the database's real path, whatever links led
        // to it.
        let real = std::fs::canonicalize(path)
            .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        let lock = Arc::new(lock::lock(&real)?);
        let bodies = Arc::new(Bodies::beside(&real)?);
        let writer = connect(path)?;
        // Room for every statement the writer runs, so none is prepared twice.
        writer.set_prepared_statement_cache_capacity(32);
        writer.execute_batch(include_str!("schema.sql"))?;
        bring_up_to_date(&writer)?;
        let orphans = bodies.sweep(&writer)?;
        if orphans > 0 {
            tracing::info!(orphans, "removed body files that no event refers to");
        }
        // The writer copies the WAL back into the database after the commit that takes it
        // past this many pages, and the next commits wait for that copy: smaller copies,
        // more often, hold each commit for less time than SQLite's default of 1,000.
        writer.pragma_update(None, "wal_autocheckpoint", 250)?;
        let reader = connect(path)?;
        reader.pragma_update(None, "query_only", true)?;

        let (tx, rx) = mpsc::channel(QUEUE);
        let sink = Sink::default();
        let observer = Observer::default();
        let (writer_sink, writer_observer) = (sink.clone(), observer.clone());
        let (writer_bodies, writer_lock) = (bodies.clone(), lock.clone());
        std::thread::Builder::new()
            .name("hookgate-store".into())
            .spawn(move || {
                write_loop(writer, rx, &writer_sink, &writer_observer, &writer_bodies);
                drop(writer_lock);
            })
            .map_err(|e| StoreError::Database(format!("writer thread: {e}")))?;
        Ok(SqliteStore {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
            sink,
            observer,
            bodies,
            _lock: lock,
        })
    }

    /// Makes a delivery whose body cannot be read a dead letter, with the reason as its
    /// attempt's error, so that it holds up none of the deliveries behind it. Once the file
    /// is put right, a replay sends it.
    async fn set_aside(
        &self,
        upstream: &str,
        delivery: &DueDelivery,
        error: &StoreError,
    ) -> Result<(), StoreError> {
        let record = AttemptRecord {
            delivery_id: delivery.id,
            attempt: delivery.attempts + 1,
            at: now_ms(),
            status: None,
            latency_ms: 0,
            error: Some(format!("not sent: its body cannot be read: {error}")),
            response_head: Vec::new(),
            next: Next::Dead,
        };
        self.submit(Op::Record(record)).await?;
        tracing::error!(%upstream, event_id = %delivery.event_id, delivery = delivery.id,
            %error, "delivery set aside as a dead letter: its body cannot be read");
        Ok(())
    }

    /// From now on, calls `observe` after each commit with the number of requests it
    /// committed together and the time it took, its sync to disk included.
    pub fn observe_commits(&self, observe: impl Fn(usize, Duration) + Send + Sync + 'static) {
        if self.observer.0.set(Box::new(observe)).is_err() {
            tracing::warn!("the store's commits are already observed");
        }
    }

    /// Writes a large body to its file, then stores its event. It runs as a task of its own,
    /// so a sender that hangs up meanwhile leaves no file behind: the event is stored as it
    /// would be had the body been in the row.
    async fn accept_in_file(self, id: String, event: NewEvent) -> Result<Accepted, StoreError> {
        let (bodies, name, body) = (self.bodies.clone(), id.clone(), event.body.clone());
        tokio::task::spawn_blocking(move || bodies.write(&name, &body))
            .await
            .map_err(|_| StoreError::Unavailable)??;
        let op = Op::Accept {
            id: id.clone(),
            event,
            in_file: true,
        };
        let outcome = match self.submit(op).await {
            Ok(Done::Accepted(accepted)) => Ok(accepted),
            Ok(_) => Err(StoreError::Unavailable),
            Err(error) => Err(error),
        };
        // Not kept: a duplicate, or a transaction that was rolled back. When the writer is
        // gone the outcome is unknown, and the file stays for the next open to judge.
        let unused = match &outcome {
            Ok(accepted) => accepted.duplicate,
            Err(error) => matches!(error, StoreError::Database(_)),
        };
        if unused {
            let bodies = self.bodies.clone();
            let _ = tokio::task::spawn_blocking(move || bodies.remove(&id)).await;
        }
        outcome
    }

    async fn submit(&self, op: Op) -> Result<Done, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending { op, reply };
        self.writer
            .send(pending)
            .await
            .map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    async fn read<T, E, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        E: Into<StoreError>,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| StoreError::Unavailable)?;
            query(&conn).map_err(Into::into)
        })
        .await
        .map_err(|_| StoreError::Unavailable)?
    }
}

/// Creates the database file readable by its owner only; SQLite gives its journal files the
/// same mode. An existing file is left as it is.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))
}

/// Changes a database made by an earlier version so that it has what this one reads.
fn bring_up_to_date(conn: &Connection) -> Result<(), StoreError> {
    let has_body_file: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('events') WHERE name = 'body_file'",
        [],
        |r| r.get(0),
    )?;
    if !has_body_file {
        conn.execute_batch("ALTER TABLE events ADD COLUMN body_file INTEGER")?;
    }
    Ok(())
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is synced at every commit, so an acknowledged event survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A statement that changes several rows inside a larger transaction keeps its undo pages
    // in a statement journal; kept in memory, it costs no temporary file. The WAL is
    // unaffected.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn write_loop(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Pending>,
    sink: &Sink,
    observer: &Observer,
    bodies: &Bodies,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (requests, started) = (batch.len(), Instant::now());
        commit(&mut conn, &mut batch, sink.get(), bodies);
        if let Some(observe) = observer.0.get() {
            observe(requests, started.elapsed());
        }
    }
}

/// Applies and commits one batch, then answers every request in it.
///
/// The batch runs as one transaction with no savepoints: a savepoint copies every page it
/// touches to a statement journal, which was most of the writer's memory traffic. When any
/// request fails, or the commit does, nothing of the batch is kept, and each request is
/// applied again in a transaction of its own, so one bad request fails alone.
fn commit(
    conn: &mut Connection,
    batch: &mut Vec<Pending>,
    sink: Option<&Arc<dyn Committed>>,
    bodies: &Bodies,
) {
    let now = now_ms();
    match apply_together(conn, batch, now, bodies) {
        Ok(results) => {
            for (pending, done) in batch.drain(..).zip(results) {
                after_commit(sink, bodies, &pending.op, &done);
                let _ = pending.reply.send(Ok(done));
            }
        }
        Err(error) if batch.len() == 1 => {
            log_failure(&error, 1);
            for pending in batch.drain(..) {
                let _ = pending.reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            log_failure(&error, batch.len());
            for pending in batch.drain(..) {
                let outcome = apply_together(conn, std::slice::from_ref(&pending), now, bodies)
                    .map(|mut done| done.remove(0));
                match &outcome {
                    Ok(done) => after_commit(sink, bodies, &pending.op, done),
                    Err(error) => log_failure(error, 1),
                }
                let _ = pending.reply.send(outcome);
            }
        }
    }
}

/// What follows a committed request: the body files of purged events go, and the sink
/// hears of the deliveries an accept created. It runs on the writer thread before the
/// sender is answered, so no attempt on a delivery can finish before the delivery stage
/// hears of it.
fn after_commit(sink: Option<&Arc<dyn Committed>>, bodies: &Bodies, op: &Op, done: &Done) {
    if let Done::Purged(_, files) = done {
        for id in files {
            bodies.remove(id);
        }
    }
    let (Some(sink), Op::Accept { event, .. }, Done::Accepted(accepted)) = (sink, op, done) else {
        return;
    };
    for (upstream, id) in event.upstreams.iter().zip(&accepted.deliveries) {
        let delivery = DueDelivery {
            id: *id,
            event_id: accepted.id.clone(),
            route: event.route.to_string(),
            attempts: 0,
            received_at: event.received_at,
            body: event.body.clone(),
            content_type: event.content_type.clone(),
            client_ip: event.client_ip.clone(),
            proto: event.proto.to_owned(),
            headers: event.headers.clone(),
        };
        sink.pending(upstream, delivery);
    }
}

fn log_failure(error: &StoreError, requests: usize) {
    tracing::error!(%error, requests, "store commit failed");
}

/// Applies `batch` in one transaction and commits it; on any error the transaction is
/// rolled back whole. The names of the batch's body files are made durable first, so no
/// committed event refers to a file a power loss could take away.
fn apply_together(
    conn: &mut Connection,
    batch: &[Pending],
    now: i64,
    bodies: &Bodies,
) -> Result<Vec<Done>, StoreError> {
    let tx = conn.transaction()?;
    let mut hot = Hot::prepare(&tx)?;
    let results = batch
        .iter()
        .map(|p| apply(&tx, &mut hot, &p.op, now))
        .collect::<Result<Vec<_>, _>>()?;
    drop(hot);
    if batch
        .iter()
        .any(|p| matches!(p.op, Op::Accept { in_file: true, .. }))
    {
        bodies.sync_names()?;
    }
    tx.commit()?;
    Ok(results)
}

/// The statements of the two requests that make up nearly every batch, accepting an event
/// and recording an attempt: taken from the statement cache once per batch rather than
/// once per request.
struct Hot<'c> {
    find_key: CachedStatement<'c>,
    claim_key: CachedStatement<'c>,
    renew_key: CachedStatement<'c>,
    insert_event: CachedStatement<'c>,
    insert_delivery: CachedStatement<'c>,
    insert_attempt: CachedStatement<'c>,
    update_delivery: CachedStatement<'c>,
}

impl<'c> Hot<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Hot<'c>> {
        Ok(Hot {
            find_key: conn.prepare_cached(
                "SELECT event_id, expires_at FROM dedup WHERE route = ?1 AND key = ?2",
            )?,
            // A plain insert, or an update of an expired key: `INSERT OR REPLACE` would make
            // the statement keep a journal of the pages it touches, to undo what it replaced.
            claim_key: conn.prepare_cached(
                "INSERT INTO dedup (route, key, event_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )?,
            renew_key: conn.prepare_cached(
                "UPDATE dedup SET event_id = ?3, expires_at = ?4 WHERE route = ?1 AND key = ?2",
            )?,
            insert_event: conn.prepare_cached(
                "INSERT INTO events (id, route, received_at, dedup_key, headers, content_type,
                                     client_ip, proto, body, body_file)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?,
            insert_delivery: conn.prepare_cached(
                "INSERT INTO deliveries (event_id, upstream, state, due_at, created_at,
                                         updated_at)
                 VALUES (?1, ?2, 'pending', ?3, ?3, ?3)",
            )?,
            // An attempt's number comes from the delivery's count, which the same
            // transaction moves on, so a number is recorded once; should one come twice, the
            // first record stands (`OR REPLACE` would journal the statement's pages).
            insert_attempt: conn.prepare_cached(
                "INSERT OR IGNORE INTO attempts
                     (delivery_id, attempt, at, status, latency_ms, error, response_head)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?,
            update_delivery: conn.prepare_cached(
                "UPDATE deliveries
                 SET state = ?2, attempts = ?3, due_at = ?4, updated_at = ?5, last_status = ?6,
                     last_error = ?7
                 WHERE id = ?1",
            )?,
        })
    }
}

fn apply(tx: &Transaction, hot: &mut Hot, op: &Op, now: i64) -> Result<Done, StoreError> {
    Ok(match op {
        Op::Accept { id, event, in_file } => {
            Done::Accepted(insert_event(hot, id, event, *in_file, now)?)
        }
        Op::Record(attempt) => {
            record_attempt(hot, attempt, now)?;
            Done::Recorded
        }
        Op::Purge { delivered_before } => {
            let (purged, files) = purge(tx, now, *delivered_before)?;
            Done::Purged(purged, files)
        }
        Op::Ping => {
            // A write that changes nothing still needs the write lock, which is the point.
            tx.execute("DELETE FROM dedup WHERE 0", [])?;
            Done::Pinged
        }
        Op::Retry(id) => Done::Retried(replay::retry(tx, *id, now)?),
        Op::RetryAll(filter) => Done::RetriedAll(replay::retry_all(tx, filter, now)?),
        Op::Pause { upstream, paused } => {
            replay::set_paused(tx, upstream, *paused, now)?;
            Done::Recorded
        }
    })
}

fn insert_event(
    hot: &mut Hot,
    id: &str,
    event: &NewEvent,
    in_file: bool,
    now: i64,
) -> Result<Accepted, StoreError> {
    let route = &*event.route;
    let taken: Option<(String, i64)> = hot
        .find_key
        .query_row(params![route, event.dedup_key], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let claim = match taken {
        Some((id, expires_at)) if expires_at > now => {
            return Ok(Accepted {
                id,
                duplicate: true,
                deliveries: Vec::new(),
            });
        }
        Some(_) => &mut hot.renew_key,
        None => &mut hot.claim_key,
    };
    let expires_at = now.saturating_add(crate::store::millis(event.window));
    let (body, body_file) = if in_file {
        (&[][..], Some(event.body.len() as i64))
    } else {
        (&event.body[..], None)
    };
    claim.execute(params![route, event.dedup_key, id, expires_at])?;
    hot.insert_event.execute(params![
        id,
        route,
        event.received_at,
        event.dedup_key,
        event.headers,
        event.content_type,
        event.client_ip,
        event.proto,
        body,
        body_file,
    ])?;
    let mut deliveries = Vec::with_capacity(event.upstreams.len());
    for upstream in &event.upstreams {
        deliveries.push(hot.insert_delivery.insert(params![id, &**upstream, now])?);
    }
    Ok(Accepted {
        id: id.to_owned(),
        duplicate: false,
        deliveries,
    })
}

/// Forgets expired dedup keys, and events received before `delivered_before` whose every
/// delivery succeeded. Events with a pending or dead delivery are kept. Returns, beside the
/// counts, the removed events whose bodies are in files of their own.
fn purge(
    conn: &Connection,
    now: i64,
    delivered_before: i64,
) -> Result<(Purged, Vec<String>), StoreError> {
    let keys = conn
        .prepare_cached(
            "DELETE FROM dedup WHERE (route, key) IN
                 (SELECT route, key FROM dedup WHERE expires_at <= ?1 LIMIT ?2)",
        )?
        .execute(params![now, PURGE_BATCH])?;
    let done = "SELECT id FROM events e WHERE received_at < ?1 AND NOT EXISTS
                    (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state != 'delivered')
                LIMIT ?2";
    conn.prepare_cached(&format!(
        "DELETE FROM attempts WHERE delivery_id IN
             (SELECT id FROM deliveries WHERE event_id IN ({done}))"
    ))?
    .execute(params![delivered_before, PURGE_BATCH])?;
    conn.prepare_cached(&format!(
        "DELETE FROM deliveries WHERE event_id IN ({done})"
    ))?
    .execute(params![delivered_before, PURGE_BATCH])?;
    let files = conn
        .prepare_cached(&format!(
            "SELECT id FROM events WHERE body_file IS NOT NULL AND id IN ({done})"
        ))?
        .query_map(params![delivered_before, PURGE_BATCH], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let events = conn
        .prepare_cached(&format!("DELETE FROM events WHERE id IN ({done})"))?
        .execute(params![delivered_before, PURGE_BATCH])?;
    let purged = Purged {
        dedup_keys: keys as u64,
        events: events as u64,
    };
    Ok((purged, files))
}

fn record_attempt(hot: &mut Hot, a: &AttemptRecord, now: i64) -> Result<(), StoreError> {
    hot.insert_attempt.execute(params![
        a.delivery_id,
        a.attempt,
        a.at,
        a.status,
        a.latency_ms,
        a.error,
        a.response_head,
    ])?;
    let (state, due_at) = match a.next {
        Next::Delivered => ("delivered", now),
        Next::RetryAt(at) => ("pending", at),
        Next::Dead => ("dead", now),
    };
    hot.update_delivery.execute(params![
        a.delivery_id,
        state,
        a.attempt,
        due_at,
        now,
        a.status,
        a.error
    ])?;
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn on_commit(&self, sink: Arc<dyn Committed>) {
        if self.sink.set(sink).is_err() {
            tracing::warn!("the store already hands its deliveries to another stage");
        }
    }

    async fn accept(&self, event: NewEvent) -> Result<Accepted, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        if event.body.len() >= IN_FILE_FROM {
            return tokio::spawn(self.clone().accept_in_file(id, event))
                .await
                .map_err(|_| StoreError::Unavailable)?;
        }
        let op = Op::Accept {
            id,
            event,
            in_file: false,
        };
        match self.submit(op).await? {
            Done::Accepted(accepted) => Ok(accepted),
            _ => Err(StoreError::Unavailable),
        }
    }

    async fn purge(&self, delivered_before: i64) -> Result<Purged, StoreError> {
        match self.submit(Op::Purge { delivered_before }).await? {
            Done::Purged(purged, _) => Ok(purged),
            _ => Err(StoreError::Unavailable),
        }
    }

    async fn due(
        &self,
        upstream: &str,
        now: i64,
        limit: usize,
        skip: &[i64],
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let name = upstream;
        let upstream = upstream.to_owned();
        let skip = id_list(skip);
        let rows = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT d.id, d.event_id, e.route, d.attempts, e.received_at, e.body,
                        e.content_type, e.client_ip, e.proto, e.headers, e.body_file
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.upstream = ?1 AND d.state = 'pending' AND d.due_at <= ?2
                   AND d.id NOT IN (SELECT value FROM json_each(?4))
                 ORDER BY d.due_at, d.id LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![upstream, now, limit as i64, skip], |r| {
                    let delivery = DueDelivery {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        route: r.get(2)?,
                        attempts: r.get(3)?,
                        received_at: r.get(4)?,
                        body: Bytes::from(r.get::<_, Vec<u8>>(5)?),
                        content_type: r.get(6)?,
                        client_ip: r.get(7)?,
                        proto: r.get(8)?,
                        headers: r.get(9)?,
                    };
                    Ok((delivery, r.get::<_, Option<i64>>(10)?))
                })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        if rows.iter().all(|(_, in_file)| in_file.is_none()) {
            return Ok(rows.into_iter().map(|(delivery, _)| delivery).collect());
        }
        // Body files are read without the reader's lock, so a slow one holds up no query.
        let bodies = self.bodies.clone();
        let (due, unreadable) = tokio::task::spawn_blocking(move || with_bodies(&bodies, rows))
            .await
            .map_err(|_| StoreError::Unavailable)??;
        for (delivery, error) in unreadable {
            self.set_aside(name, &delivery, &error).await?;
        }
        Ok(due)
    }

    async fn next_due(&self, upstream: &str, skip: &[i64]) -> Result<Option<i64>, StoreError> {
        let upstream = upstream.to_owned();
        let skip = id_list(skip);
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT MIN(due_at) FROM deliveries
                 WHERE upstream = ?1 AND state = 'pending'
                   AND id NOT IN (SELECT value FROM json_each(?2))",
            )?
            .query_row(params![upstream, skip], |r| r.get(0))
        })
        .await
    }

    async fn record(&self, attempt: AttemptRecord) -> Result<(), StoreError> {
        self.submit(Op::Record(attempt)).await.map(|_| ())
    }

    async fn queue_depth(&self) -> Result<Vec<QueueDepth>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT upstream, state, COUNT(*) FROM deliveries GROUP BY upstream, state",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(QueueDepth {
                    upstream: r.get(0)?,
                    state: r.get(1)?,
                    count: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn pending(&self, upstreams: &[std::sync::Arc<str>]) -> Result<i64, StoreError> {
        let upstreams: Vec<String> = upstreams.iter().map(|u| u.to_string()).collect();
        self.read(move |conn| {
            // One index range per upstream: the cost follows the backlog, not the table.
            let mut stmt = conn.prepare_cached(
                "SELECT COUNT(*) FROM deliveries WHERE upstream = ?1 AND state = 'pending'",
            )?;
            let mut total = 0;
            for upstream in &upstreams {
                total += stmt.query_row(params![upstream], |r| r.get::<_, i64>(0))?;
            }
            Ok::<_, rusqlite::Error>(total)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await?;
        self.submit(Op::Ping).await?;
        let bodies = self.bodies.clone();
        tokio::task::spawn_blocking(move || bodies.probe())
            .await
            .map_err(|_| StoreError::Unavailable)?
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        self.read(move |conn| inspect::events(conn, &query)).await
    }

    async fn event(&self, id: &str) -> Result<Option<EventDetail>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| inspect::event(conn, &id)).await
    }

    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<DeliveryView>, StoreError> {
        self.read(move |conn| inspect::deliveries(conn, &query))
            .await
    }

    async fn delivery(&self, id: i64) -> Result<Option<DeliveryView>, StoreError> {
        self.read(move |conn| inspect::delivery(conn, id)).await
    }

    async fn retry(&self, id: i64) -> Result<RetryOne, StoreError> {
        match self.submit(Op::Retry(id)).await? {
            Done::Retried(outcome) => Ok(outcome),
            _ => Err(StoreError::Unavailable),
        }
    }

    async fn retry_all(&self, filter: RetryFilter) -> Result<RetriedAll, StoreError> {
        match self.submit(Op::RetryAll(filter)).await? {
            Done::RetriedAll(outcome) => Ok(outcome),
            _ => Err(StoreError::Unavailable),
        }
    }

    async fn set_paused(&self, upstream: &str, paused: bool) -> Result<(), StoreError> {
        let upstream = upstream.to_owned();
        self.submit(Op::Pause { upstream, paused }).await.map(drop)
    }

    async fn paused(&self) -> Result<Vec<String>, StoreError> {
        self.read(inspect::paused).await
    }
}

/// A delivery whose body cannot be read, and why.
type SetAside = (DueDelivery, StoreError);

/// Reads the bodies kept in files into the deliveries that carry them. A delivery whose file
/// cannot be read is returned apart, with the reason; when the folder cannot be read, no
/// delivery is judged and the read fails.
fn with_bodies(
    bodies: &Bodies,
    rows: Vec<(DueDelivery, Option<i64>)>,
) -> Result<(Vec<DueDelivery>, Vec<SetAside>), StoreError> {
    let (mut due, mut unreadable) = (Vec::with_capacity(rows.len()), Vec::new());
    for (mut delivery, in_file) in rows {
        match in_file.map(|size| bodies.read(&delivery.event_id, size)) {
            None => due.push(delivery),
            Some(Ok(body)) => {
                delivery.body = body.into();
                due.push(delivery);
            }
            Some(Err(Unread::File(error))) => unreadable.push((delivery, error)),
            Some(Err(Unread::Folder(error))) => return Err(error),
        }
    }
    Ok((due, unreadable))
}

/// Delivery ids as a JSON array, bound as one parameter: the statement text stays the same
/// whatever the list, so it is prepared once and cached.
fn id_list(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", ids.join(","))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_support::{delivered, event, open};
    use super::*;

    #[tokio::test]
    async fn a_key_inside_its_window_is_a_duplicate_with_the_first_id() {
        let (_dir, store) = open();
        let first = store
            .accept(event("r", "k", Duration::from_secs(60), &["a"]))
            .await
            .unwrap();
        let again = store
            .accept(event("r", "k", Duration::from_secs(60), &["a"]))
            .await
            .unwrap();
        assert!(!first.duplicate && again.duplicate);
        assert_eq!(first.id, again.id);
        assert_eq!(store.due("a", now_ms(), 10, &[]).await.unwrap().len(), 1);
    }

    /// A batch handed to the writer as one: two accepts around an attempt record for a
    /// delivery that does not exist, which breaks a foreign key.
    #[test]
    fn a_failing_request_fails_alone_and_the_rest_of_its_batch_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.db");
        let mut conn = connect(&path).unwrap();
        conn.execute_batch(include_str!("schema.sql")).unwrap();
        let accept = |key: &str| Op::Accept {
            id: key.to_owned(),
            event: event("r", key, Duration::from_secs(60), &["a"]),
            in_file: false,
        };
        let ops = vec![accept("one"), Op::Record(delivered(999)), accept("two")];
        let mut answers = Vec::new();
        let mut batch: Vec<Pending> = ops
            .into_iter()
            .map(|op| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Pending { op, reply }
            })
            .collect();
        commit(&mut conn, &mut batch, None, &Bodies::beside(&path).unwrap());

        let outcomes: Vec<_> = answers
            .into_iter()
            .map(|a| a.blocking_recv().unwrap())
            .collect();
        assert!(matches!(outcomes[0], Ok(Done::Accepted(_))));
        assert!(
            matches!(&outcomes[1], Err(StoreError::Database(e)) if e.contains("FOREIGN KEY")),
            "the bad record fails: {:?}",
            outcomes[1].as_ref().err()
        );
        assert!(matches!(outcomes[2], Ok(Done::Accepted(_))));
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM events"), 2);
        assert_eq!(count("SELECT COUNT(*) FROM deliveries"), 2);
        assert_eq!(count("SELECT COUNT(*) FROM attempts"), 0);
    }

    #[tokio::test]
    async fn a_database_with_the_earlier_indexes_is_brought_up_to_date_and_keeps_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("earlier.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(include_str!("schema.sql")).unwrap();
            conn.execute_batch(
                "DROP INDEX deliveries_pending; DROP INDEX deliveries_dead;
                 CREATE INDEX events_by_route_time ON events (route, received_at);
                 CREATE INDEX deliveries_due ON deliveries (upstream, state, due_at);
                 CREATE INDEX deliveries_by_state ON deliveries (state, id);
                 INSERT INTO events (id, route, received_at, dedup_key, headers, client_ip,
                                     proto, body)
                     VALUES ('e1', 'r', 1, 'k', '{}', '127.0.0.1', 'https', x'7b7d');
                 INSERT INTO deliveries (event_id, upstream, state, due_at, created_at,
                                         updated_at)
                     VALUES ('e1', 'a', 'pending', 1, 1, 1);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let due = store.due("a", now_ms(), 10, &[]).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].event_id, "e1");
        let conn = Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        let names: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            names,
            [
                "dedup_expiry",
                "deliveries_by_event",
                "deliveries_dead",
                "deliveries_pending",
                "events_by_time"
            ]
        );
    }

    #[tokio::test]
    async fn a_database_from_before_body_files_gets_the_column_and_keeps_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("earlier.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(include_str!("schema.sql")).unwrap();
            conn.execute_batch(
                "ALTER TABLE events DROP COLUMN body_file;
                 INSERT INTO events (id, route, received_at, dedup_key, headers, client_ip,
                                     proto, body)
                     VALUES ('e1', 'r', 1, 'k', '{}', '127.0.0.1', 'https', x'7b7d');
                 INSERT INTO deliveries (event_id, upstream, state, due_at, created_at,
                                         updated_at)
                     VALUES ('e1', 'a', 'pending', 1, 1, 1);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let mut large = event("r", "large", Duration::from_secs(60), &["a"]);
        large.body = Bytes::from(vec![b'x'; IN_FILE_FROM]);
        store.accept(large).await.unwrap();
        let due = store.due("a", now_ms(), 10, &[]).await.unwrap();
        let bodies: Vec<_> = due.iter().map(|d| d.body.len()).collect();
        assert_eq!(bodies, [2, IN_FILE_FROM]);
        assert_eq!(&due[0].body[..], b"{}");
    }

    #[derive(Debug, Default)]
    struct Collect(Mutex<Vec<(String, DueDelivery)>>);

    impl Committed for Collect {
        fn pending(&self, upstream: &str, delivery: DueDelivery) {
            self.0.lock().unwrap().push((upstream.to_owned(), delivery));
        }
    }

    #[tokio::test]
    async fn each_new_delivery_is_handed_over_before_its_sender_is_answered() {
        let (_dir, store) = open();
        let sink = Arc::new(Collect::default());
        store.on_commit(sink.clone());
        let first = store
            .accept(event("r", "k", Duration::from_secs(60), &["a", "b"]))
            .await
            .unwrap();
        let handed: Vec<_> = sink.0.lock().unwrap().drain(..).collect();
        assert_eq!(handed.len(), 2, "one per upstream, before accept returned");
        assert_eq!(
            handed
                .iter()
                .map(|(u, d)| (u.as_str(), d.id))
                .collect::<Vec<_>>(),
            vec![("a", first.deliveries[0]), ("b", first.deliveries[1])]
        );
        let stored = store.due("a", now_ms(), 10, &[]).await.unwrap();
        let (_, fresh) = &handed[0];
        assert_eq!(stored.len(), 1);
        assert_eq!(
            (&fresh.event_id, &fresh.body, &fresh.headers, fresh.attempts),
            (
                &stored[0].event_id,
                &stored[0].body,
                &stored[0].headers,
                stored[0].attempts
            )
        );

        let again = store
            .accept(event("r", "k", Duration::from_secs(60), &["a", "b"]))
            .await
            .unwrap();
        assert!(again.duplicate && again.deliveries.is_empty());
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "a duplicate hands over nothing"
        );
    }

    #[tokio::test]
    async fn a_key_past_its_window_is_accepted_as_a_new_event() {
        let (_dir, store) = open();
        let first = store
            .accept(event("r", "k", Duration::ZERO, &["a"]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let later = store
            .accept(event("r", "k", Duration::ZERO, &["a"]))
            .await
            .unwrap();
        assert!(!later.duplicate);
        assert_ne!(first.id, later.id);
    }

    #[tokio::test]
    async fn concurrent_copies_share_one_commit_and_create_one_event() {
        let (_dir, store) = open();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let store = store.clone();
            let e = event("r", "same", Duration::from_secs(60), &["a", "b"]);
            tasks.push(tokio::spawn(async move { store.accept(e).await.unwrap() }));
        }
        let mut new = 0;
        for task in tasks {
            new += usize::from(!task.await.unwrap().duplicate);
        }
        assert_eq!(new, 1);
        let depth = store.queue_depth().await.unwrap();
        let pending: i64 = depth.iter().map(|d| d.count).sum();
        assert_eq!(pending, 2, "one delivery per upstream");
    }

    #[tokio::test]
    async fn an_attempt_moves_a_delivery_to_its_next_state() {
        let (_dir, store) = open();
        store
            .accept(event("r", "k", Duration::from_secs(60), &["a"]))
            .await
            .unwrap();
        let due = store.due("a", now_ms(), 10, &[]).await.unwrap();
        let record = |next| AttemptRecord {
            delivery_id: due[0].id,
            attempt: 1,
            at: now_ms(),
            status: Some(503),
            latency_ms: 3,
            error: Some("status 503".into()),
            response_head: b"busy".to_vec(),
            next,
        };
        let later = now_ms() + 60_000;
        store.record(record(Next::RetryAt(later))).await.unwrap();
        assert!(store.due("a", now_ms(), 10, &[]).await.unwrap().is_empty());
        assert_eq!(store.next_due("a", &[]).await.unwrap(), Some(later));
        assert_eq!(store.due("a", later, 10, &[]).await.unwrap()[0].attempts, 1);

        store.record(record(Next::Dead)).await.unwrap();
        assert_eq!(store.next_due("a", &[]).await.unwrap(), None);
        let depth = store.queue_depth().await.unwrap();
        assert_eq!(depth[0].state, "dead");
    }

    #[tokio::test]
    async fn deliveries_under_way_are_left_out_of_due() {
        let (_dir, store) = open();
        store
            .accept(event("r", "k1", Duration::from_secs(60), &["a"]))
            .await
            .unwrap();
        store
            .accept(event("r", "k2", Duration::from_secs(60), &["a"]))
            .await
            .unwrap();
        let all = store.due("a", now_ms(), 10, &[]).await.unwrap();
        let rest = store.due("a", now_ms(), 10, &[all[0].id]).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id, all[1].id);
    }

    #[tokio::test]
    async fn purge_forgets_expired_keys_and_delivered_events_but_keeps_the_rest() {
        let (_dir, store) = open();
        store
            .accept(event("r", "gone", Duration::ZERO, &["a"]))
            .await
            .unwrap();
        store
            .accept(event("r", "kept", Duration::from_secs(60), &["a"]))
            .await
            .unwrap();
        let due = store.due("a", now_ms(), 10, &[]).await.unwrap();
        store.record(delivered(due[0].id)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;

        let purged = store.purge(now_ms()).await.unwrap();
        assert_eq!(
            purged,
            Purged {
                dedup_keys: 1,
                events: 1
            }
        );
        let depth = store.queue_depth().await.unwrap();
        assert_eq!(depth.len(), 1);
        assert_eq!((depth[0].state.as_str(), depth[0].count), ("pending", 1));
        assert_eq!(store.purge(now_ms()).await.unwrap(), Purged::default());
    }
}
