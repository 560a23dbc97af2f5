//! What the embedded store costs: a group of N events accepted together (WAL with
//! `synchronous = FULL`, so each commit waits for the disk), and the delivery queue's reads.
#![allow(
    missing_docs,
    reason = "criterion's macros define undocumented public functions"
)]
#![allow(
    clippy::expect_used,
    reason = "a benchmark with a broken setup should stop at once"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookgate::store::sqlite::SqliteStore;
use hookgate::store::{NewEvent, Store, now_ms};

#[path = "support/events.rs"]
mod events;

static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// The next event, with a dedup key of its own.
fn event(body: &Bytes) -> NewEvent {
    let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    events::event(body, format!("s:bench-{key}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// N events handed to the writer at once; it commits them together (a few of them may make
/// a commit of their own when the writer wakes before all are queued).
fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).expect("the store"));
    let body = events::sample();
    let rt = runtime();

    let mut group = c.benchmark_group("store/accept");
    group.sample_size(20);
    for n in [1usize, 16, 64, 256] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| rt.block_on(accept_all(&store, &body, n)))
        });
    }
    group.finish();
}

/// The same with a body the size of a two-hour transcript, which the store keeps in a file
/// of its own.
fn group_commit_large(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).expect("the store"));
    let body = Bytes::from(vec![b'7'; 1_361_167]);
    let rt = runtime();

    let mut group = c.benchmark_group("store/accept_1.36MB");
    group.sample_size(10);
    for n in [1usize, 8] {
        group.throughput(Throughput::Bytes((n * body.len()) as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| rt.block_on(accept_all(&store, &body, n)))
        });
    }
    group.finish();
}

/// Hands `n` events to the store at once, as `n` requests would, and waits for them all.
async fn accept_all(store: &Arc<SqliteStore>, body: &Bytes, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (store, event) = (store.clone(), event(body));
            tokio::spawn(async move { store.accept(event).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("joined").expect("accepted");
    }
}

/// One look at the queue as a scheduler makes it: the oldest due deliveries, skipping those
/// under way.
fn due(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).expect("the store"));
    let body = events::sample();
    let rt = runtime();
    rt.block_on(accept_all(&store, &body, 10_000));
    let skip: Vec<i64> = (1..=16).collect();

    let mut group = c.benchmark_group("store/due");
    for limit in [1usize, 16] {
        group.bench_function(BenchmarkId::from_parameter(limit), |b| {
            b.iter(|| rt.block_on(store.due("transcripts", now_ms(), limit, &skip)))
        });
    }
    group.finish();
}

criterion_group!(benches, group_commit, group_commit_large, due);
criterion_main!(benches);
