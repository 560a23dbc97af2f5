//! Events and stores for the store's own tests.

use std::time::Duration;

use bytes::Bytes;

use super::SqliteStore;
use crate::store::{AttemptRecord, NewEvent, Next, now_ms};

/// An event on `route` with dedup `key`, kept for `window`, for `upstreams`.
pub(super) fn event(route: &str, key: &str, window: Duration, upstreams: &[&str]) -> NewEvent {
    NewEvent {
        route: route.into(),
        dedup_key: key.to_owned(),
        window,
        received_at: now_ms(),
        headers: r#"{"user-agent":"test"}"#.into(),
        content_type: Some("application/json".into()),
        body: Bytes::from_static(b"{\"n\":1}"),
        client_ip: "127.0.0.1".into(),
        proto: "https",
        upstreams: upstreams.iter().map(|u| (*u).into()).collect(),
    }
}

/// A store in a fresh temporary folder.
pub(super) fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("data/test.db")).expect("store opens");
    (dir, store)
}

/// A first attempt on `delivery_id` that the upstream acknowledged.
pub(super) fn delivered(delivery_id: i64) -> AttemptRecord {
    AttemptRecord {
        delivery_id,
        attempt: 1,
        at: now_ms(),
        status: Some(200),
        latency_ms: 1,
        error: None,
        response_head: Vec::new(),
        next: Next::Delivered,
    }
}
