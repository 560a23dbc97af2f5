//! A fixed amount of store work, for counting its instructions: ROUNDS times, GROUP events
//! (64 unless given) accepted together in one group commit, then one delivered attempt
//! recorded for each. A small GROUP stands for a moderate rate, where commits are small.
//!
//! Timings on a shared machine move by tens of percent; an instruction count does not.
//! `bench/README.md` shows how it is run under `valgrind --tool=callgrind`:
//!
//! ```sh
//! cargo build --release --example store_count
//! valgrind --tool=callgrind target/release/examples/store_count "$(mktemp -d)" 30
//! valgrind --tool=callgrind target/release/examples/store_count "$(mktemp -d)" 320 6
//! ```
#![allow(
    clippy::expect_used,
    reason = "a measurement with a broken setup should stop at once"
)]

use std::sync::Arc;

use bytes::Bytes;
use hookgate::store::sqlite::SqliteStore;
use hookgate::store::{AttemptRecord, NewEvent, Next, Store, now_ms};

#[path = "../benches/support/events.rs"]
mod events;

/// Events accepted together in each round, unless the command line says otherwise.
const GROUP: u64 = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(rounds)) = (args.next(), args.next()) else {
        eprintln!("usage: store_count FOLDER ROUNDS [GROUP]");
        std::process::exit(2);
    };
    let rounds: u64 = rounds.parse().expect("ROUNDS is a number");
    let group: u64 = args
        .next()
        .map_or(GROUP, |g| g.parse().expect("GROUP is a number"));
    let store = SqliteStore::open(&std::path::Path::new(&dir).join("count.db")).expect("a store");
    let store = Arc::new(store);
    let body = events::sample();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        for round in 0..rounds {
            let accepts = (0..group).map(|n| {
                let store = store.clone();
                let event = event(&body, round * group + n);
                tokio::spawn(async move { store.accept(event).await.expect("accepted") })
            });
            let mut deliveries = Vec::new();
            for accept in accepts.collect::<Vec<_>>() {
                deliveries.extend(accept.await.expect("joined").deliveries);
            }
            let records = deliveries.into_iter().map(|id| {
                let store = store.clone();
                tokio::spawn(async move { store.record(delivered(id)).await.expect("recorded") })
            });
            for record in records.collect::<Vec<_>>() {
                record.await.expect("joined");
            }
        }
    });
}

/// An event with a dedup key spread over the key space, as request ids are.
fn event(body: &Bytes, n: u64) -> NewEvent {
    let key = format!("s:{:016x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    events::event(body, key)
}

fn delivered(delivery_id: i64) -> AttemptRecord {
    AttemptRecord {
        delivery_id,
        attempt: 1,
        at: now_ms(),
        status: Some(200),
        latency_ms: 1,
        error: None,
        response_head: b"ok".to_vec(),
        next: Next::Delivered,
    }
}
