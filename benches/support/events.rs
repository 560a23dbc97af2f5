//! The event that the store benchmark and `examples/store_count.rs` hand to the store.

use std::time::Duration;

use bytes::Bytes;
use hookgate::store::{NewEvent, now_ms};

/// The Pulse sample, as the body of every event.
pub(crate) fn sample() -> Bytes {
    Bytes::from_static(include_bytes!("../../fixtures/pulse/success.json"))
}

/// An event on the `pulse` route with `body` and `dedup_key`, for one upstream.
pub(crate) fn event(body: &Bytes, dedup_key: String) -> NewEvent {
    NewEvent {
        route: "pulse".into(),
        dedup_key,
        window: Duration::from_secs(72 * 3600),
        received_at: now_ms(),
        headers: r#"{"content-type":"application/json","user-agent":"bench"}"#.into(),
        content_type: Some("application/json".into()),
        body: body.clone(),
        client_ip: "127.0.0.1".into(),
        proto: "https",
        upstreams: vec!["transcripts".into()],
    }
}
