//! End to end through real TLS and HTTP: what senders are answered and what upstreams get.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

const SAMPLES: [&str; 5] = [
    "success.json",
    "success-pro.json",
    "failed.json",
    "failed-error.json",
    "success-extra-nested.json",
];

struct Fanout {
    transcripts: SampleUpstream,
    alerts: SampleUpstream,
    gw: Running,
}

async fn fanout(alerts_behaviour: Behaviour) -> Fanout {
    let transcripts = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let alerts = SampleUpstream::start(alerts_behaviour).await.unwrap();
    let toml = server_toml("")
        + &upstream_toml("transcripts", &transcripts.url("/transcripts"), "")
        + &upstream_toml("alerts", &alerts.url("/alerts"), "")
        + &pulse_route(r#"["transcripts", { name = "alerts", when = { "/status" = "failed" } }]"#);
    let gw = Running::start(&toml).await;
    Fanout {
        transcripts,
        alerts,
        gw,
    }
}

fn pulse_url(gw: &Running) -> String {
    gw.url(&format!("/hooks/pulse?token={TOKEN}"))
}

async fn samples_arrive_byte_for_byte(client: TestClient, gw: &Fanout) {
    let mut ids = Vec::new();
    for name in SAMPLES {
        let body = fixture(name);
        let answer = client
            .post(
                &pulse_url(&gw.gw),
                &[("content-type", "application/json")],
                &body,
            )
            .await;
        assert_eq!(answer.status, 202, "{name}: {:?}", answer.body);
        assert_eq!(answer.json()["duplicate"], false);
        ids.push(answer.json()["id"].as_str().unwrap().to_owned());
    }

    let all_arrived = eventually(Duration::from_secs(10), || {
        gw.transcripts.accepted().len() == 5 && gw.alerts.accepted().len() == 2
    })
    .await;
    assert!(
        all_arrived,
        "transcripts {}, alerts {}",
        gw.transcripts.received().len(),
        gw.alerts.received().len()
    );

    for (name, id) in SAMPLES.iter().zip(&ids) {
        let body = fixture(name);
        let got = gw.transcripts.accepted();
        let got = got
            .iter()
            .find(|r| r.header("hookgate-event-id") == id)
            .unwrap();
        assert_eq!(got.body, body, "{name} changed on its way");
        assert_eq!(got.header("content-type"), "application/json");
        assert_eq!(got.header("hookgate-route"), "pulse");
        assert_eq!(got.header("hookgate-attempt"), "1");
        assert_eq!(got.header("x-forwarded-for"), "127.0.0.1");
        assert_eq!(got.header("x-forwarded-proto"), "https");
    }
    let mut alerted: Vec<Vec<u8>> = gw
        .alerts
        .accepted()
        .iter()
        .map(|r| r.body.to_vec())
        .collect();
    alerted.sort();
    let mut failed = vec![fixture("failed.json"), fixture("failed-error.json")];
    failed.sort();
    assert_eq!(alerted, failed, "alerts gets exactly the failed jobs");
}

#[tokio::test]
async fn pulse_samples_reach_every_matching_upstream_byte_for_byte_over_http1() {
    let gw = fanout(Behaviour::Accept).await;
    samples_arrive_byte_for_byte(gw.gw.site.client(), &gw).await;
}

#[tokio::test]
async fn pulse_samples_reach_every_matching_upstream_byte_for_byte_over_http2() {
    let gw = fanout(Behaviour::Accept).await;
    samples_arrive_byte_for_byte(gw.gw.site.h2_client(), &gw).await;
}

#[tokio::test]
async fn wrong_or_missing_token_is_401_and_nothing_is_stored_or_delivered() {
    let gw = fanout(Behaviour::Accept).await;
    let client = gw.gw.site.client();
    let body = fixture("success.json");
    for url in [
        gw.gw.url("/hooks/pulse"),
        gw.gw.url("/hooks/pulse?token=wrong"),
        gw.gw.url("/hooks/pulse?token="),
        gw.gw.url(&format!("/hooks/pulse?other={TOKEN}")),
    ] {
        let answer = client.post(&url, &[], &body).await;
        assert_eq!(answer.status, 401, "{url}");
        assert_eq!(answer.json()["error"], "unauthorized");
        assert!(!String::from_utf8_lossy(&answer.body).contains(TOKEN));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(gw.transcripts.received().is_empty());
    assert_eq!(
        count(&gw.gw.site.db_path(), "SELECT COUNT(*) FROM events"),
        0
    );
}

#[tokio::test]
async fn a_sequential_duplicate_is_answered_200_with_the_first_id_and_delivered_once() {
    let gw = fanout(Behaviour::Accept).await;
    let client = gw.gw.site.client();
    let body = fixture("success.json");
    let first = client.post(&pulse_url(&gw.gw), &[], &body).await;
    let second = client.post(&pulse_url(&gw.gw), &[], &body).await;
    assert_eq!(first.status, 202);
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["duplicate"], true);
    assert_eq!(second.json()["id"], first.json()["id"]);

    assert!(
        eventually(Duration::from_secs(5), || gw.transcripts.accepted().len()
            == 1)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.transcripts.received().len(), 1);
    assert_eq!(
        count(&gw.gw.site.db_path(), "SELECT COUNT(*) FROM deliveries"),
        1
    );
}

#[tokio::test]
async fn twenty_concurrent_copies_are_acknowledged_as_one_event_and_delivered_once() {
    let gw = fanout(Behaviour::Accept).await;
    let url = pulse_url(&gw.gw);
    let body = fixture("failed.json");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = gw.gw.site.client();
        let (url, body) = (url.clone(), body.clone());
        tasks.push(tokio::spawn(
            async move { client.post(&url, &[], &body).await },
        ));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let created = answers.iter().filter(|a| a.status == 202).count();
    let duplicates = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!((created, duplicates), (1, 19));
    let id = &answers[0].json()["id"];
    assert!(answers.iter().all(|a| &a.json()["id"] == id));

    assert!(
        eventually(Duration::from_secs(5), || {
            gw.transcripts.accepted().len() == 1 && gw.alerts.accepted().len() == 1
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.transcripts.received().len(), 1);
    assert_eq!(gw.alerts.received().len(), 1);
}

#[tokio::test]
async fn an_upstream_failing_twice_gets_the_event_on_the_third_attempt() {
    let gw = fanout(Behaviour::FailFirst(2)).await;
    let client = gw.gw.site.client();
    let body = fixture("failed.json");
    let answer = client.post(&pulse_url(&gw.gw), &[], &body).await;
    assert_eq!(answer.status, 202);

    assert!(eventually(Duration::from_secs(10), || gw.alerts.accepted().len() == 1).await);
    let attempts: Vec<(String, u16)> = gw
        .alerts
        .received()
        .iter()
        .map(|r| (r.header("hookgate-attempt").to_owned(), r.status.as_u16()))
        .collect();
    let expected = [("1", 503), ("2", 503), ("3", 200)].map(|(a, s)| (a.to_owned(), s));
    assert_eq!(attempts, expected);
    assert!(gw.alerts.received().iter().all(|r| r.body == body));
    // The other upstream was not held up by the failing one.
    assert_eq!(gw.transcripts.received().len(), 1);
    assert_eq!(gw.transcripts.received()[0].header("hookgate-attempt"), "1");
}

#[tokio::test]
async fn a_body_over_the_cap_is_413_whether_declared_or_not() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("max_body = \"1KiB\"")
        + &upstream_toml("u", &upstream.url("/"), "")
        + &pulse_route(r#"["u"]"#);
    let gw = Running::start(&toml).await;
    let big = format!("{{\"request_id\":\"x\",\"pad\":\"{}\"}}", "a".repeat(2_000));

    let answer = gw
        .site
        .client()
        .post(&pulse_url(&gw), &[], big.as_bytes())
        .await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["error"], "body_too_large");

    let answer = raw_chunked_post(&gw, &pulse_url(&gw), big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(count(&gw.site.db_path(), "SELECT COUNT(*) FROM events"), 0);
}

/// Sends a chunked HTTP/1.1 POST over TLS by hand, so no Content-Length is declared.
async fn raw_chunked_post(gw: &Running, url: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = &url[url.find("/hooks").expect("a route URL")..];
    let mut tls = gw.raw_tls().await;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(256) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let _ = tls.write_all(&request).await;
    let mut answer = vec![0; 4096];
    let n = tls.read(&mut answer).await.unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_non_json_bodies_get_clear_answers() {
    let gw = fanout(Behaviour::Accept).await;
    let client = gw.gw.site.client();

    let answer = client.post(&gw.gw.url("/hooks/nope"), &[], b"{}").await;
    assert_eq!(
        (answer.status.as_u16(), answer.json()["error"].clone()),
        (404, "not_found".into())
    );

    let answer = client.request("GET", &pulse_url(&gw.gw), &[], b"").await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.headers["allow"], "POST");

    let answer = client.post(&pulse_url(&gw.gw), &[], b"not json").await;
    assert_eq!(
        (answer.status.as_u16(), answer.json()["error"].clone()),
        (400, "not_json".into())
    );

    // Parsers disagree on which of two values for one key counts, so neither is taken.
    let twice = br#"{"request_id": "a", "status": "success", "request_id": "b"}"#;
    let answer = client.post(&pulse_url(&gw.gw), &[], twice).await;
    assert_eq!(
        (answer.status.as_u16(), answer.json()["error"].clone()),
        (400, "repeated_json_key".into())
    );
    let stored = count(&gw.gw.site.db_path(), "SELECT COUNT(*) FROM events");
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_route_over_its_rate_answers_its_limited_status_with_retry_after() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + &upstream_toml("u", &upstream.url("/"), "")
        + &pulse_route(r#"["u"]"#).replace(
            "limited_status = 503",
            "limited_status = 503\nrate = \"2/h\"",
        );
    let gw = Running::start(&toml).await;
    let client = gw.site.client();
    for (i, expected) in [202, 202, 503].into_iter().enumerate() {
        let body = format!("{{\"request_id\":\"r{i}\"}}");
        let answer = client.post(&pulse_url(&gw), &[], body.as_bytes()).await;
        assert_eq!(answer.status, expected, "request {i}");
        if expected == 503 {
            let wait: u64 = answer.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=3_600).contains(&wait), "{wait}");
            assert_eq!(answer.json()["error"], "rate_limited");
        }
    }
    assert_eq!(count(&gw.site.db_path(), "SELECT COUNT(*) FROM events"), 2);
}

#[tokio::test]
async fn a_hanging_upstream_delays_neither_the_other_upstream_nor_the_sender() {
    let gw = {
        let transcripts = SampleUpstream::start(Behaviour::Accept).await.unwrap();
        let alerts = SampleUpstream::start(Behaviour::Slow(Duration::from_secs(30)))
            .await
            .unwrap();
        let toml = server_toml("")
            + &upstream_toml("transcripts", &transcripts.url("/t"), "")
            + &upstream_toml("alerts", &alerts.url("/a"), "concurrency = 1")
            + &pulse_route(r#"["transcripts", "alerts"]"#);
        let gw = Running::start(&toml).await;
        Fanout {
            transcripts,
            alerts,
            gw,
        }
    };
    let client = gw.gw.site.client();
    for i in 0..10 {
        let body = format!("{{\"request_id\":\"slow-{i}\"}}");
        let answer = client.post(&pulse_url(&gw.gw), &[], body.as_bytes()).await;
        assert_eq!(answer.status, 202);
    }
    // The hanging upstream holds its attempt for 30 s; the other gets everything long before.
    assert!(
        eventually(Duration::from_secs(10), || gw.transcripts.accepted().len()
            == 10)
        .await
    );
    assert!(
        gw.alerts.received().len() <= 1,
        "alerts holds one attempt at a time"
    );
}

#[tokio::test]
async fn a_client_over_its_rate_is_refused_before_the_body_is_read() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("client_rate = \"3/m\"")
        + &upstream_toml("u", &upstream.url("/"), "")
        + &pulse_route(r#"["u"]"#);
    let gw = Running::start(&toml).await;
    let client = gw.site.client();
    let mut statuses = Vec::new();
    for i in 0..5 {
        let body = format!("{{\"request_id\":\"c{i}\"}}");
        statuses.push(
            client
                .post(&pulse_url(&gw), &[], body.as_bytes())
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, [202, 202, 202, 503, 503]);
    // Unsigned requests spend the client's budget too: the limit comes before verification.
    let answer = client.post(&gw.url("/hooks/pulse"), &[], b"{}").await;
    assert_eq!(answer.status, 503);
    assert!(answer.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn an_upstream_that_keeps_failing_trips_the_breaker_and_is_left_alone() {
    let failing = SampleUpstream::start(Behaviour::Always(http::StatusCode::SERVICE_UNAVAILABLE))
        .await
        .unwrap();
    let toml = server_toml("")
        + &upstream_toml(
            "down",
            &failing.url("/"),
            "concurrency = 1\nbreaker = { failures = 3, cooldown = \"1h\" }",
        )
        + &pulse_route(r#"["down"]"#);
    let gw = Running::start(&toml).await;
    let client = gw.site.client();
    for i in 0..6 {
        let body = format!("{{\"request_id\":\"b{i}\"}}");
        assert_eq!(
            client
                .post(&pulse_url(&gw), &[], body.as_bytes())
                .await
                .status,
            202
        );
    }
    assert!(eventually(Duration::from_secs(5), || failing.received().len() >= 3).await);
    // Retries are due every few tens of milliseconds; an open breaker holds them all.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(failing.received().len(), 3);
    let pending = count(
        &gw.site.db_path(),
        "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'",
    );
    assert_eq!(pending, 6, "held deliveries stay queued, none is given up");
}

#[tokio::test]
async fn past_the_high_water_mark_new_events_get_503_with_retry_after() {
    let failing = SampleUpstream::start(Behaviour::Always(http::StatusCode::SERVICE_UNAVAILABLE))
        .await
        .unwrap();
    let toml = server_toml("")
        + "[store]\nhigh_water = 2\n"
        + &upstream_toml(
            "down",
            &failing.url("/"),
            "breaker = { failures = 1, cooldown = \"1h\" }",
        )
        + &pulse_route(r#"["down"]"#);
    let gw = Running::start(&toml).await;
    let client = gw.site.client();
    let mut statuses = Vec::new();
    for i in 0..3 {
        let body = format!("{{\"request_id\":\"hw{i}\"}}");
        let answer = client.post(&pulse_url(&gw), &[], body.as_bytes()).await;
        statuses.push(answer.status.as_u16());
        if answer.status == 503 {
            assert!(answer.headers.contains_key("retry-after"));
            assert_eq!(answer.json()["error"], "unavailable");
        }
    }
    assert_eq!(statuses, [202, 202, 503]);
    assert_eq!(count(&gw.site.db_path(), "SELECT COUNT(*) FROM events"), 2);
}

#[tokio::test]
async fn when_the_store_cannot_write_the_sender_gets_503_and_nothing_is_half_stored() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml =
        server_toml("") + &upstream_toml("u", &upstream.url("/"), "") + &pulse_route(r#"["u"]"#);
    let gw = Running::start(&toml).await;
    let client = gw.site.client();

    let lock = rusqlite::Connection::open(gw.site.db_path()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let answer = client
        .post(&pulse_url(&gw), &[], br#"{"request_id":"locked"}"#)
        .await;
    assert_eq!(answer.status, 503);
    assert!(answer.headers.contains_key("retry-after"));
    lock.execute_batch("ROLLBACK").unwrap();

    let answer = client
        .post(&pulse_url(&gw), &[], br#"{"request_id":"locked"}"#)
        .await;
    assert_eq!(
        answer.status, 202,
        "the retry is stored as a new event, not a duplicate"
    );
    assert_eq!(count(&gw.site.db_path(), "SELECT COUNT(*) FROM events"), 1);
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 1).await);
}

#[tokio::test]
async fn a_delivery_held_past_max_age_becomes_a_dead_letter_without_being_sent() {
    let failing = SampleUpstream::start(Behaviour::Always(http::StatusCode::SERVICE_UNAVAILABLE))
        .await
        .unwrap();
    let toml = server_toml("")
        + &format!(
            "[upstreams.u]\nurl = \"{}\"\nretry = {{ initial = \"50ms\", max_delay = \"100ms\", max_age = \"1s\" }}\nbreaker = {{ failures = 1, cooldown = \"2s\" }}\n",
            failing.url("/")
        )
        + &pulse_route("[\"u\"]");
    let gw = Running::start(&toml).await;
    let client = gw.site.client();
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    assert_eq!(
        client
            .post(&url, &[], br#"{"request_id":"a1"}"#)
            .await
            .status,
        202
    );
    assert!(eventually(Duration::from_secs(5), || failing.received().len() == 1).await);
    // The first answer opened the breaker for two seconds; this one waits behind it.
    assert_eq!(
        client
            .post(&url, &[], br#"{"request_id":"a2"}"#)
            .await
            .status,
        202
    );

    let db = gw.site.db_path();
    let dead = "SELECT COUNT(*) FROM deliveries WHERE state = 'dead'";
    assert!(eventually(Duration::from_secs(8), || count(&db, dead) == 2).await);
    let unsent =
        "SELECT COUNT(*) FROM attempts WHERE status IS NULL AND error LIKE 'not sent: max_age%'";
    assert_eq!(count(&db, unsent), 2, "both were held past max_age");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(failing.received().len(), 1, "nothing was sent past max_age");
}
