//! Requests from senders that mean harm: silent connections, bodies pushed with credentials
//! already known to be wrong, and credentials that must not end up stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gateway(server_extra: &str) -> (SampleUpstream, Running) {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml(server_extra)
        + &upstream_toml("u", &upstream.url("/in"), "")
        + &pulse_route("[\"u\"]");
    (upstream, Running::start(&toml).await)
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_after_the_header_timeout() {
    let (_upstream, gw) = gateway("header_timeout = \"1s\"").await;
    let mut stream = gw.raw_tls().await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {read:?}"
    );
}

#[tokio::test]
async fn a_wrong_token_is_refused_before_the_body_is_read_and_without_100_continue() {
    let (_upstream, gw) = gateway("body_timeout = \"30s\"").await;
    let mut stream = gw.raw_tls().await;
    let head = "POST /hooks/pulse?token=wrong HTTP/1.1\r\nhost: localhost\r\n\
                content-length: 4000000\r\nexpect: 100-continue\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[tokio::test]
async fn a_custom_credential_header_is_not_stored_and_the_store_is_private() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + &upstream_toml("u", &upstream.url("/in"), "")
        + "[[routes]]\nname = \"key\"\npath = \"/hooks/key\"\nverify = { scheme = \"token\", header = \"X-Api-Key\", secrets = [{ file = \"pulse.token\" }] }\nupstreams = [\"u\"]\n";
    let gw = Running::start(&toml).await;
    let answer = gw
        .site
        .client()
        .post(&gw.url("/hooks/key"), &[("x-api-key", TOKEN)], b"{}")
        .await;
    assert_eq!(answer.status, 202);

    let conn = rusqlite::Connection::open(gw.site.db_path()).unwrap();
    let headers: String = conn
        .query_row("SELECT headers FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(!headers.contains(TOKEN), "{headers}");
    assert!(headers.contains("x-api-key"), "{headers}");
    let mode = std::fs::metadata(gw.site.db_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the store is readable by others: {mode:o}");
}

#[tokio::test]
async fn a_callback_url_for_one_job_cannot_take_another_jobs_dedup_key() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + &upstream_toml("u", &upstream.url("/in"), "")
        + "[[routes]]\nname = \"pulse\"\npath = \"/hooks/pulse\"\nverify = { scheme = \"signed-url\", secrets = [{ file = \"pulse.token\" }] }\ndedup = { key = \"json:/request_id\" }\nupstreams = [\"u\"]\n";
    let gw = Running::start(&toml).await;
    let config = gw.site.config();
    let verifier = &config.routes[0].verifier;
    let later = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let url_for = |job: &str| {
        let extra = vec![("job".to_owned(), job.to_owned())];
        verifier
            .callback_url(&gw.url("/hooks/pulse"), later, &extra)
            .unwrap()
            .unwrap()
    };
    let client = gw.site.client();
    let body = br#"{"request_id":"victim","status":"success"}"#;

    assert_eq!(client.post(&url_for("42"), &[], body).await.status, 202);
    let answer = client.post(&url_for("99"), &[], body).await;
    assert_eq!(answer.status, 202, "job 99's result is its own event");
    let again = client.post(&url_for("99"), &[], body).await;
    assert_eq!(again.status, 200, "and job 99's retry is its duplicate");
}

#[tokio::test]
async fn no_token_secret_or_signature_appears_in_any_log_line_even_at_trace() {
    const HMAC_SECRET: &str = "hmac-secret-4b1d";
    const PASSWORD: &str = "basic-password-77e2";
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let route = |name: &str, verify: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nverify = {verify}\nupstreams = [\"u\"]\n"
        )
    };
    let token = "{ file = \"pulse.token\" }";
    let toml = server_toml("")
        + &upstream_toml("u", &upstream.url("/in"), "")
        + &route(
            "query",
            &format!("{{ scheme = \"token\", query = \"token\", secrets = [{token}] }}"),
        )
        + &route(
            "header",
            &format!("{{ scheme = \"token\", header = \"X-Api-Key\", secrets = [{token}] }}"),
        )
        + &route(
            "path",
            &format!("{{ scheme = \"token\", path = true, secrets = [{token}] }}"),
        )
        + &route(
            "hmac",
            &format!("{{ scheme = \"hmac\", header = \"X-Sig\", secrets = [\"{HMAC_SECRET}\"] }}"),
        )
        + &route(
            "basic",
            &format!(
                "{{ scheme = \"basic\", users = [{{ user = \"pulse\", password = \"{PASSWORD}\" }}] }}"
            ),
        );
    let site = Site::new(&toml);
    let (gateway, port) = run_logged(&site);
    let client = site.client();
    let base = format!("https://localhost:{port}/hooks");
    let body = br#"{"request_id":"log-check"}"#;
    let signature = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    };
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("pulse:{PASSWORD}"))
    };
    let authorization = format!("Basic {basic}");
    let cookie = "session=cookie-value-9f3a";

    for (url, headers) in [
        (format!("{base}/query?token={TOKEN}"), vec![]),
        (format!("{base}/query?token={TOKEN}-wrong"), vec![]),
        (format!("{base}/header"), vec![("x-api-key", TOKEN)]),
        (format!("{base}/path/{TOKEN}"), vec![("cookie", cookie)]),
        (format!("{base}/path/{TOKEN}x"), vec![]),
        (format!("{base}/hmac"), vec![("x-sig", signature.as_str())]),
        (
            format!("{base}/basic"),
            vec![("authorization", authorization.as_str())],
        ),
    ] {
        let answer = client.post(&url, &headers, body).await;
        assert!(answer.status.as_u16() < 500, "{url}: {}", answer.status);
    }
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() >= 5).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let lines = gateway.lines.lock().unwrap().clone();
    assert!(lines.len() > 20, "the run logged something to search");
    for secret in [
        TOKEN,
        HMAC_SECRET,
        PASSWORD,
        signature.as_str(),
        basic.as_str(),
        "cookie-value-9f3a",
    ] {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "{secret:?} appears in the log:\n{leaks:#?}"
        );
    }
    let stored = count(&site.db_path(), "SELECT COUNT(*) FROM events");
    assert_eq!(stored, 5);
    let conn = rusqlite::Connection::open(site.db_path()).unwrap();
    let mut stmt = conn.prepare("SELECT headers FROM events").unwrap();
    let headers: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for secret in [
        TOKEN,
        signature.as_str(),
        basic.as_str(),
        "cookie-value-9f3a",
    ] {
        assert!(
            headers.iter().all(|h| !h.contains(secret)),
            "{secret:?} stored in {headers:?}"
        );
    }
}

#[tokio::test]
async fn pending_deliveries_of_a_removed_upstream_are_warned_about_at_start() {
    let gone = "[upstreams.gone]\nurl = \"http://127.0.0.1:9/\"\nbreaker = { failures = 1, cooldown = \"1h\" }\n";
    let kept = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + gone
        + &upstream_toml("kept", &kept.url("/in"), "")
        + &pulse_route("[\"gone\", \"kept\"]");
    let site = Site::new(&toml);
    let (gateway, port) = run_logged(&site);
    let url = format!("https://localhost:{port}/hooks/pulse?token={TOKEN}");
    assert_eq!(
        site.client()
            .post(&url, &[], br#"{"request_id":"o1"}"#)
            .await
            .status,
        202
    );
    drop(gateway);

    let without =
        server_toml("") + &upstream_toml("kept", &kept.url("/in"), "") + &pulse_route("[\"kept\"]");
    std::fs::write(&site.config_path, without).unwrap();
    let (gateway, _) = run_logged(&site);
    let warned = eventually(Duration::from_secs(5), || {
        let lines = gateway.lines.lock().unwrap();
        lines
            .iter()
            .any(|l| l.contains("no longer configured") && l.contains("upstream=gone"))
    })
    .await;
    assert!(warned, "no warning about the upstream that was removed");
    let pending = count(
        &site.db_path(),
        "SELECT COUNT(*) FROM deliveries WHERE upstream = 'gone' AND state = 'pending'",
    );
    assert_eq!(pending, 1, "its delivery is kept");
}

#[tokio::test]
async fn bodies_in_flight_share_one_memory_budget_and_the_excess_gets_503() {
    let (upstream, gw) = gateway("max_body = \"64KiB\"\nmax_inflight_body = \"64KiB\"").await;
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));

    // A sender with a valid token declares 60 KiB and sends only part of it.
    let big = format!(
        "{{\"request_id\":\"big\",\"pad\":\"{}\"}}",
        "x".repeat(60_000)
    );
    let mut slow = gw.raw_tls().await;
    let head = format!(
        "POST /hooks/pulse?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        big.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&big.as_bytes()[..1_000]).await.unwrap();
    slow.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let small = format!(
        "{{\"request_id\":\"small\",\"pad\":\"{}\"}}",
        "y".repeat(10_000)
    );
    let refused = gw.site.client().post(&url, &[], small.as_bytes()).await;
    assert_eq!(
        refused.status, 503,
        "the budget is taken by the body still arriving"
    );
    assert!(refused.headers.contains_key("retry-after"));

    slow.write_all(&big.as_bytes()[1_000..]).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = slow.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 202"));
    let accepted = gw.site.client().post(&url, &[], small.as_bytes()).await;
    assert_eq!(
        accepted.status, 202,
        "the budget is back once the first body is stored"
    );
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 2).await);
}
