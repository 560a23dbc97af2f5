//! The admin API end to end: dead letters made by a refusing upstream, inspected, and
//! replayed one at a time or all at once; pauses that hold deliveries across a restart;
//! the token; and bad input answered with JSON errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use hookgate::gateway::Gateway;
use http::StatusCode;
use support::admin::*;
use support::*;

fn config(upstreams: &str, route_upstreams: &str) -> String {
    server_toml("") + &admin_toml("127.0.0.1:0") + upstreams + &pulse_route(route_upstreams)
}

/// An upstream that gives up after its first attempt.
fn one_shot(name: &str, url: &str) -> String {
    upstream_toml(name, url, "").replace("max_attempts = 5", "max_attempts = 1")
}

fn body(n: usize) -> Vec<u8> {
    format!("{{\"request_id\":\"req-{n}\",\"status\":\"success\"}}").into_bytes()
}

/// Posts `body` to the Pulse route; the event id.
async fn send(gw: &Running, body: &[u8]) -> String {
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let answer = gw.site.client().post(&url, &[], body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    answer.json()["id"].as_str().unwrap().to_owned()
}

/// Stops the gateway and starts it again on the same folder with `toml`.
async fn restart(gw: Running, toml: &str) -> Running {
    let Running { site, gateway } = gw;
    gateway.shutdown().await;
    std::fs::write(&site.config_path, toml).unwrap();
    let gateway = Gateway::start(&site.config()).await.unwrap();
    Running { site, gateway }
}

/// A gateway whose Pulse route delivers to one upstream that accepts everything.
async fn with_one_sink() -> (SampleUpstream, Running) {
    let sink = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = config(&upstream_toml("sink", &sink.url("/in"), ""), "[\"sink\"]");
    (sink, Running::start(&toml).await)
}

fn admin(gw: &Running) -> std::net::SocketAddr {
    gw.gateway.admin_addr().unwrap()
}

#[tokio::test]
async fn a_refused_event_is_a_dead_letter_that_a_replay_delivers_once_the_upstream_is_fixed() {
    let refusing = SampleUpstream::start(Behaviour::Always(StatusCode::BAD_REQUEST))
        .await
        .unwrap();
    let gw = Running::start(&config(
        &upstream_toml("sink", &refusing.url("/in"), ""),
        "[\"sink\"]",
    ))
    .await;
    let sent = fixture("success.json");
    let id = send(&gw, &sent).await;

    let dead = admin_until(admin(&gw), "/api/deliveries?state=dead", |v| {
        len(v, "deliveries") == 1
    })
    .await;
    let delivery = &dead["deliveries"][0];
    assert_eq!(
        (delivery["event_id"].as_str(), delivery["upstream"].as_str()),
        (Some(&*id), Some("sink"))
    );
    assert_eq!(delivery["last_status"], 400);

    let event = admin_ok(admin(&gw), "GET", &format!("/api/events/{id}")).await;
    assert_eq!(event["event"]["size"], sent.len());
    let key = event["event"]["dedup_key"].as_str().unwrap();
    assert!(
        key.ends_with("6f1c2a9e-4b7d-4e1a-9c3f-2d8b5e7a1c40"),
        "{key}"
    );
    assert!(event["headers"].is_object());
    let attempt = &event["deliveries"][0]["attempts"][0];
    assert_eq!(
        (attempt["attempt"].as_u64(), attempt["status"].as_u64()),
        (Some(1), Some(400))
    );
    assert_eq!(attempt["response_head"], "ok");
    let listed = admin_ok(
        admin(&gw),
        "GET",
        "/api/events?route=pulse&since=1h&limit=5",
    )
    .await;
    assert_eq!(listed["events"][0]["id"].as_str(), Some(&*id));

    let fixed = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let gw = restart(
        gw,
        &config(&upstream_toml("sink", &fixed.url("/in"), ""), "[\"sink\"]"),
    )
    .await;
    let delivery_id = delivery["id"].as_i64().unwrap();
    let path = format!("/api/deliveries/{delivery_id}/retry");
    let replayed = admin_ok(admin(&gw), "POST", &path).await;
    assert_eq!(replayed["delivery"]["state"], "pending");

    assert!(eventually(Duration::from_secs(5), || fixed.accepted().len() == 1).await);
    let got = &fixed.accepted()[0];
    assert_eq!(&got.body[..], &sent[..]);
    assert_eq!(got.header("hookgate-event-id"), id);
    assert_eq!(got.header("hookgate-attempt"), "2");
    let event = admin_until(admin(&gw), &format!("/api/events/{delivery_id}"), |v| {
        v["deliveries"][0]["delivery"]["state"] == "delivered"
    })
    .await;
    assert_eq!(len(&event["deliveries"][0], "attempts"), 2);

    let again = admin_call(admin(&gw), "POST", &path, Some(ADMIN_TOKEN)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json()["error"], "not_dead");
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn retry_all_replays_every_dead_letter_of_the_chosen_upstream() {
    let flaky = SampleUpstream::start(Behaviour::FailFirst(1))
        .await
        .unwrap();
    let refusing = SampleUpstream::start(Behaviour::Always(StatusCode::GONE))
        .await
        .unwrap();
    let upstreams =
        one_shot("flaky", &flaky.url("/")) + &upstream_toml("gone", &refusing.url("/"), "");
    let gw = Running::start(&config(&upstreams, "[\"flaky\", \"gone\"]")).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(send(&gw, &body(n)).await);
    }
    admin_until(admin(&gw), "/api/deliveries?state=dead", |v| {
        len(v, "deliveries") == 6
    })
    .await;

    let path = "/api/deliveries/retry?state=dead&upstream=flaky";
    let retried = admin_ok(admin(&gw), "POST", path).await;
    assert_eq!(
        (retried["retried"].as_u64(), retried["remaining"].as_u64()),
        (Some(3), Some(0))
    );

    assert!(eventually(Duration::from_secs(5), || flaky.accepted().len() == 3).await);
    let mut got: Vec<String> = flaky
        .accepted()
        .iter()
        .map(|r| r.header("hookgate-event-id").to_owned())
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    let dead = admin_ok(admin(&gw), "GET", "/api/deliveries?state=dead&route=pulse").await;
    assert_eq!(len(&dead, "deliveries"), 3);
    assert!(
        dead["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["upstream"] == "gone")
    );
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn a_paused_upstream_receives_nothing_even_after_a_restart_until_it_is_resumed() {
    let sink = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = config(
        &upstream_toml("sink", &sink.url("/"), "rate = \"50/s\""),
        "[\"sink\"]",
    );
    let gw = Running::start(&toml).await;
    let paused = admin_ok(admin(&gw), "POST", "/api/upstreams/sink/pause").await;
    assert_eq!(paused["paused"], true);
    for n in 0..3 {
        send(&gw, &body(n)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(sink.received().is_empty());
    let listed = admin_ok(
        admin(&gw),
        "GET",
        "/api/deliveries?state=paused&upstream=sink",
    )
    .await;
    assert_eq!(len(&listed, "deliveries"), 3);

    let gw = restart(gw, &toml).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(sink.received().is_empty(), "the pause survives a restart");
    admin_ok(admin(&gw), "POST", "/api/upstreams/sink/resume").await;
    assert!(eventually(Duration::from_secs(5), || sink.accepted().len() == 3).await);
    let pending = admin_ok(admin(&gw), "GET", "/api/deliveries?state=paused").await;
    assert_eq!(len(&pending, "deliveries"), 0);
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn the_token_is_required_and_bad_input_gets_json_errors() {
    let (_sink, gw) = with_one_sink().await;
    let addr = admin(&gw);
    for token in [None, Some("wrong")] {
        let refused = admin_call(addr, "GET", "/api/deliveries?state=dead", token).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.json()["error"], "unauthorized");
    }
    let refused = admin_call(addr, "POST", "/api/upstreams/sink/pause", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    for (method, path, status, code) in [
        ("GET", "/api/deliveries?state=lost", 400, "bad_query"),
        ("GET", "/api/deliveries?limit=many", 400, "bad_query"),
        ("GET", "/api/deliveries?colour=red", 400, "bad_query"),
        ("GET", "/api/events?since=yesterday", 400, "bad_query"),
        ("GET", "/api/events?since=200000000000d", 400, "bad_query"),
        ("GET", "/api/events/0190-no-such-event", 404, "not_found"),
        ("GET", "/api/events/424242", 404, "not_found"),
        ("POST", "/api/deliveries/abc/retry", 400, "bad_id"),
        ("POST", "/api/deliveries/424242/retry", 404, "not_found"),
        (
            "POST",
            "/api/deliveries/retry?state=pending",
            400,
            "bad_state",
        ),
        (
            "POST",
            "/api/deliveries/retry?upstream=nowhere",
            404,
            "unknown_upstream",
        ),
        (
            "POST",
            "/api/upstreams/nowhere/pause",
            404,
            "unknown_upstream",
        ),
        ("GET", "/api/deliveries/retry", 405, "method_not_allowed"),
        ("POST", "/api/events", 405, "method_not_allowed"),
        ("GET", "/api/nothing", 404, "not_found"),
    ] {
        let answer = admin_call(addr, method, path, Some(ADMIN_TOKEN)).await;
        assert_eq!(answer.status.as_u16(), status, "{method} {path}");
        let json = answer.json();
        assert_eq!(json["error"], code, "{method} {path}");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    gw.gateway.shutdown().await;
}

/// A raw HTTP/1.1 request to the admin listener with the given header lines; the status.
async fn raw_admin(addr: std::net::SocketAddr, method: &str, path: &str, headers: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let head = String::from_utf8_lossy(&answer);
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn without_a_token_the_admin_api_refuses_what_a_web_page_could_send() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &upstream_toml("sink", &upstream.url("/in"), "")
        + &pulse_route("[\"sink\"]");
    let gw = Running::start(&toml).await;
    let addr = admin(&gw);
    let pause = "/api/upstreams/sink/pause";
    let local = format!("host: {addr}\r\n");

    // A page's cross-site form post, a fetch marked by the browser, a rebound host name.
    let from_a_page = [
        format!("{local}origin: http://evil.example\r\n"),
        format!("{local}sec-fetch-site: cross-site\r\n"),
        "host: evil.example:9090\r\n".to_owned(),
    ];
    for headers in &from_a_page {
        assert_eq!(
            raw_admin(addr, "POST", pause, headers).await,
            403,
            "{headers}"
        );
    }
    // Nothing was paused: an event still goes straight through.
    send(&gw, &body(1)).await;
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 1).await);

    // curl, the command line and scripts name the address or localhost, and are served.
    for host in [
        local,
        "host: localhost:9090\r\n".to_owned(),
        "host: [::1]\r\n".to_owned(),
    ] {
        assert_eq!(
            raw_admin(addr, "GET", "/api/events", &host).await,
            200,
            "{host}"
        );
    }
    // A scraper or a probe may name the service by any host name.
    let scraper = "host: hookgate.monitoring:9090\r\n";
    assert_eq!(raw_admin(addr, "GET", "/metrics", scraper).await, 200);
    assert_eq!(raw_admin(addr, "GET", "/api/events", scraper).await, 403);
    assert_eq!(
        raw_admin(addr, "POST", pause, &format!("host: {addr}\r\n")).await,
        200
    );
}

#[tokio::test]
async fn with_a_token_any_host_name_may_be_used_but_pages_are_still_refused() {
    let (_sink, gw) = with_one_sink().await;
    let addr = admin(&gw);
    let bearer = format!("authorization: Bearer {ADMIN_TOKEN}\r\n");
    let named = format!("host: hookgate-admin.internal:9090\r\n{bearer}");
    assert_eq!(raw_admin(addr, "GET", "/healthz", &named).await, 200);
    let page = format!("{named}origin: https://hookgate-admin.internal\r\n");
    assert_eq!(raw_admin(addr, "GET", "/healthz", &page).await, 403);
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let (_sink, gw) = with_one_sink().await;
    let addr = admin(&gw);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let headers = format!("host: {addr}\r\nauthorization: {scheme} {ADMIN_TOKEN}\r\n");
        assert_eq!(
            raw_admin(addr, "GET", "/api/events", &headers).await,
            200,
            "{scheme}"
        );
    }
    let basic = format!("host: {addr}\r\nauthorization: Basic {ADMIN_TOKEN}\r\n");
    assert_eq!(raw_admin(addr, "GET", "/api/events", &basic).await, 401);
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn a_request_whose_headers_never_end_is_cut_off_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("header_timeout = \"1s\"")
        + &admin_toml("127.0.0.1:0")
        + &upstream_toml("sink", &upstream.url("/in"), "")
        + &pulse_route("[\"sink\"]");
    let gw = Running::start(&toml).await;

    let mut stream = tokio::net::TcpStream::connect(admin(&gw)).await.unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the connection was still open after 10 s");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    assert!(!String::from_utf8_lossy(&rest).contains("200"), "{rest:?}");
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_admin_cap_are_closed_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_sink, gw) = with_one_sink().await;
    let addr = admin(&gw);

    let mut held = Vec::new();
    for _ in 0..hookgate::admin::MAX_CONNECTIONS {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    // The listener takes connections in order: once one past the cap has been closed, every
    // held one has its slot.
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), over.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");

    // Closed connections give their slots back.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
         connection: close\r\n\r\n"
    );
    loop {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut answer = Vec::new();
        if stream.write_all(request.as_bytes()).await.is_ok() {
            let read = stream.read_to_end(&mut answer);
            let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
        }
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.gateway.shutdown().await;
}
