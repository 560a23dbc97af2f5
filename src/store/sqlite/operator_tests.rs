//! Tests of what operators read and change: listings, replays and pauses.

use std::time::Duration;

use super::SqliteStore;
use super::test_support::{event, open};
use crate::store::inspect::{DeliveryQuery, DeliveryState, EventQuery, RetryFilter, RetryOne};
use crate::store::{AttemptRecord, Next, Store, now_ms};

/// Makes every pending delivery to `upstream` dead after one refused attempt.
async fn kill_all(store: &SqliteStore, upstream: &str) {
    for due in store.due(upstream, now_ms(), 100, &[]).await.unwrap() {
        let attempt = AttemptRecord {
            delivery_id: due.id,
            attempt: due.attempts + 1,
            at: now_ms(),
            status: Some(400),
            latency_ms: 2,
            error: Some("status 400".into()),
            response_head: b"bad request".to_vec(),
            next: Next::Dead,
        };
        store.record(attempt).await.unwrap();
    }
}

fn in_state(state: DeliveryState) -> DeliveryQuery {
    DeliveryQuery {
        state: Some(state),
        limit: 100,
        ..DeliveryQuery::default()
    }
}

#[tokio::test]
async fn events_are_listed_newest_first_and_filtered() {
    let (_dir, store) = open();
    let first = store
        .accept(event("a", "1", Duration::from_secs(60), &["u"]))
        .await
        .unwrap();
    let second = store
        .accept(event("b", "2", Duration::from_secs(60), &["u"]))
        .await
        .unwrap();
    let all = EventQuery {
        limit: 10,
        ..EventQuery::default()
    };
    let listed = store.events(all.clone()).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|e| e.id == first.id) && listed[0].size == 7);

    let only_b = EventQuery {
        route: Some("b".into()),
        ..all.clone()
    };
    assert_eq!(store.events(only_b).await.unwrap()[0].id, second.id);
    let future = EventQuery {
        since: Some(now_ms() + 60_000),
        ..all
    };
    assert!(store.events(future).await.unwrap().is_empty());
}

#[tokio::test]
async fn one_event_shows_its_headers_deliveries_and_attempts() {
    let (_dir, store) = open();
    let accepted = store
        .accept(event("a", "1", Duration::from_secs(60), &["u", "v"]))
        .await
        .unwrap();
    kill_all(&store, "u").await;

    let detail = store.event(&accepted.id).await.unwrap().unwrap();
    assert_eq!(detail.headers["user-agent"], "test");
    assert_eq!(detail.event.dedup_key, "1");
    assert_eq!(detail.deliveries.len(), 2);
    let dead = &detail.deliveries[0];
    assert_eq!(dead.delivery.state, DeliveryState::Dead);
    assert_eq!(dead.attempts[0].status, Some(400));
    assert_eq!(dead.attempts[0].response_head, "bad request");
    assert!(detail.deliveries[1].attempts.is_empty());
    assert!(store.event("no-such-event").await.unwrap().is_none());
}

#[tokio::test]
async fn deliveries_are_listed_by_state_upstream_and_route() {
    let (_dir, store) = open();
    store
        .accept(event("a", "1", Duration::from_secs(60), &["u", "v"]))
        .await
        .unwrap();
    store
        .accept(event("b", "2", Duration::from_secs(60), &["u"]))
        .await
        .unwrap();
    kill_all(&store, "u").await;

    let dead = store
        .deliveries(in_state(DeliveryState::Dead))
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead[0].id > dead[1].id, "newest first");
    let dead_b = DeliveryQuery {
        route: Some("b".into()),
        ..in_state(DeliveryState::Dead)
    };
    assert_eq!(store.deliveries(dead_b).await.unwrap().len(), 1);
    let pending_v = DeliveryQuery {
        upstream: Some("v".into()),
        ..in_state(DeliveryState::Pending)
    };
    assert_eq!(store.deliveries(pending_v).await.unwrap()[0].upstream, "v");
}

#[tokio::test]
async fn a_retried_dead_letter_is_due_now_and_keeps_its_attempts() {
    let (_dir, store) = open();
    let accepted = store
        .accept(event("a", "1", Duration::from_secs(60), &["u"]))
        .await
        .unwrap();
    kill_all(&store, "u").await;
    let id = store
        .deliveries(in_state(DeliveryState::Dead))
        .await
        .unwrap()[0]
        .id;

    let outcome = store.retry(id).await.unwrap();
    assert_eq!(
        outcome,
        RetryOne::Retried {
            upstream: "u".into()
        }
    );
    let due = store.due("u", now_ms(), 10, &[]).await.unwrap();
    assert_eq!((due[0].id, due[0].attempts), (id, 1));
    let detail = store.event(&accepted.id).await.unwrap().unwrap();
    assert_eq!(detail.deliveries[0].attempts.len(), 1);

    let again = store.retry(id).await.unwrap();
    assert_eq!(again, RetryOne::NotDead(DeliveryState::Pending));
    assert_eq!(store.retry(id + 100).await.unwrap(), RetryOne::NotFound);
}

#[tokio::test]
async fn retry_all_replays_what_matches_in_batches() {
    let (_dir, store) = open();
    for key in ["1", "2", "3"] {
        store
            .accept(event("a", key, Duration::from_secs(60), &["u", "v"]))
            .await
            .unwrap();
    }
    kill_all(&store, "u").await;
    kill_all(&store, "v").await;

    let configured = vec!["u".to_owned(), "v".to_owned()];
    let only_u = RetryFilter {
        upstream: Some("u".into()),
        limit: Some(2),
        among: configured.clone(),
        ..RetryFilter::default()
    };
    let batch = store.retry_all(only_u.clone()).await.unwrap();
    assert_eq!((batch.retried, batch.remaining), (2, 1));
    assert_eq!(batch.upstreams, ["u"]);
    let next = RetryFilter {
        after: batch.last_id.unwrap(),
        ..only_u
    };
    let rest = store.retry_all(next).await.unwrap();
    assert_eq!((rest.retried, rest.remaining), (1, 0));

    let dead = store
        .deliveries(in_state(DeliveryState::Dead))
        .await
        .unwrap();
    assert!(dead.len() == 3 && dead.iter().all(|d| d.upstream == "v"));
    // With `v` gone from the configuration, its dead letters stay dead.
    let without_v = RetryFilter {
        among: vec!["u".to_owned()],
        ..RetryFilter::default()
    };
    let none = store.retry_all(without_v).await.unwrap();
    assert_eq!((none.retried, none.remaining), (0, 0));
    let everything = RetryFilter {
        among: configured,
        ..RetryFilter::default()
    };
    assert_eq!(store.retry_all(everything).await.unwrap().retried, 3);
}

#[tokio::test]
async fn a_paused_upstream_lists_its_pending_deliveries_as_paused_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .accept(event("a", "1", Duration::from_secs(60), &["u", "v"]))
        .await
        .unwrap();
    store.set_paused("u", true).await.unwrap();
    store.set_paused("u", true).await.unwrap();

    let paused = store
        .deliveries(in_state(DeliveryState::Paused))
        .await
        .unwrap();
    assert!(paused.len() == 1 && paused[0].upstream == "u");
    let pending = store
        .deliveries(in_state(DeliveryState::Pending))
        .await
        .unwrap();
    assert!(pending.len() == 1 && pending[0].upstream == "v");
    drop(store);

    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.paused().await.unwrap(), ["u"]);
    reopened.set_paused("u", false).await.unwrap();
    assert!(reopened.paused().await.unwrap().is_empty());
    let pending = reopened
        .deliveries(in_state(DeliveryState::Pending))
        .await
        .unwrap();
    assert_eq!(pending.len(), 2);
}
