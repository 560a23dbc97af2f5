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
