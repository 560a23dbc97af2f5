//! Requests from senders that mean harm: silent connections, bodies pushed with credentials
//! already known to be wrong, and credentials that must not end up stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::admin::*;
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
async fn a_refused_request_whose_body_is_still_arriving_gets_its_answer_and_keeps_its_connection() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let route =
        pulse_route("[\"u\"]").replace("limited_status", "max_body = \"256KiB\"\nlimited_status");
    let toml = server_toml("") + &upstream_toml("u", &upstream.url("/in"), "") + &route;
    let gw = Running::start(&toml).await;

    let sized = |query: &str, extra: &str, size: usize| {
        let head = format!(
            "POST /hooks/pulse?{query} HTTP/1.1\r\nhost: localhost\r\n{extra}content-length: {size}\r\n\r\n"
        );
        [head.into_bytes(), vec![b'x'; size]].concat()
    };
    // 1 MiB in chunks of 64 KiB, to a route that takes 256 KiB: refused part way.
    let chunked = {
        let mut request = format!(
            "POST /hooks/pulse?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..16 {
            request.extend_from_slice(b"10000\r\n");
            request.extend_from_slice(&[b'x'; 1 << 16]);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        request
    };
    let cases = [
        (sized("token=wrong", "", 200_000), "401", "unauthorized"),
        // Declared past the route's cap (not the server's): refused at the door.
        (
            sized(&format!("token={TOKEN}"), "", 3_000_000),
            "413",
            "body_too_large",
        ),
        (
            sized(
                &format!("token={TOKEN}"),
                "content-encoding: br\r\n",
                200_000,
            ),
            "415",
            "unsupported_encoding",
        ),
        (chunked, "413", "body_too_large"),
    ];
    for (n, (request, status, code)) in cases.into_iter().enumerate() {
        let (mut from, mut to) = tokio::io::split(gw.raw_tls().await);
        // The sender writes its whole body before it reads, as most HTTP/1 clients do.
        let writing = tokio::spawn(async move {
            to.write_all(&request).await?;
            to.flush().await?;
            Ok::<_, std::io::Error>(to)
        });
        let mut to = tokio::time::timeout(Duration::from_secs(20), writing)
            .await
            .expect("the body was taken")
            .unwrap()
            .expect("the body was taken, not reset");
        let answer = read_answer(&mut from).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("\"error\":\"{code}\"")),
            "{answer}"
        );

        // The connection is still good for the next request.
        let body = format!("{{\"request_id\":\"after-{n}\"}}");
        let next = format!(
            "POST /hooks/pulse?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        to.write_all(next.as_bytes()).await.unwrap();
        to.flush().await.unwrap();
        let answer = read_answer(&mut from).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{status}: {answer}");
    }
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 4).await);
}

#[tokio::test]
async fn two_hosts_a_coding_under_chunked_and_a_content_type_beyond_ascii_are_refused() {
    let (upstream, gw) = gateway("").await;
    let body = r#"{"request_id":"framed"}"#;
    let cases: [(&[u8], &str, &str); 3] = [
        (
            b"transfer-encoding: chunked\r\nhost: other.example",
            "HTTP/1.1 400",
            "bad_host",
        ),
        (
            b"transfer-encoding: gzip, chunked\r\ncontent-type: application/json",
            "HTTP/1.1 501",
            "unsupported_transfer_coding",
        ),
        (
            b"transfer-encoding: chunked\r\ncontent-type: application/json; charset=\xe9",
            "HTTP/1.1 400",
            "bad_content_type",
        ),
    ];
    for (headers, status, code) in cases {
        let mut stream = gw.raw_tls().await;
        let mut request =
            format!("POST /hooks/pulse?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\n").into_bytes();
        request.extend_from_slice(headers);
        request.extend_from_slice(
            format!("\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes(),
        );
        stream.write_all(&request).await.unwrap();
        stream.flush().await.unwrap();
        let answer = read_answer(&mut stream).await;
        assert!(answer.starts_with(status), "{answer}");
        assert!(
            answer.contains(&format!("\"error\":\"{code}\"")),
            "{answer}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(upstream.accepted().is_empty());
    assert_eq!(count(&gw.site.db_path(), "SELECT COUNT(*) FROM events"), 0);
}

/// Reads one answer with a short body (a `Content-Length` of at most a few hundred bytes).
async fn read_answer(from: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if rest.len() >= length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), from.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("an answer, not a reset");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
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
        + &admin_toml("127.0.0.1:0")
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

    // Everything a person could read afterwards: log lines, answers, the admin API's views.
    let mut shown = Vec::new();
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
        shown.push(String::from_utf8_lossy(&answer.body).into_owned());
    }
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() >= 5).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut lines = gateway.lines.lock().unwrap().clone();
    assert!(lines.len() > 20, "the run logged something to search");
    let admin: std::net::SocketAddr = lines
        .iter()
        .find(|l| l.contains("admin listening"))
        .and_then(|l| l.split("http://").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .expect("the admin listener is logged");
    let events = admin_ok(admin, "GET", "/api/events").await;
    assert_eq!(len(&events, "events"), 5);
    shown.push(events.to_string());
    for event in events["events"].as_array().unwrap() {
        let id = event["id"].as_str().unwrap();
        let detail = admin_ok(admin, "GET", &format!("/api/events/{id}")).await;
        assert!(detail["headers"].is_object(), "{detail}");
        shown.push(detail.to_string());
    }
    shown.push(admin_ok(admin, "GET", "/api/deliveries").await.to_string());
    lines.extend(shown);
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
            "{secret:?} appears in the log, an answer or the admin API:\n{leaks:#?}"
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
async fn bodies_in_flight_share_one_memory_budget_charged_as_their_bytes_arrive() {
    let (upstream, gw) = gateway("max_body = \"64KiB\"\nmax_inflight_body = \"64KiB\"").await;
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let small = |id: &str| {
        format!(
            "{{\"request_id\":\"{id}\",\"pad\":\"{}\"}}",
            "y".repeat(10_000)
        )
    };
    let big = format!(
        "{{\"request_id\":\"big\",\"pad\":\"{}\"}}",
        "x".repeat(60_000)
    );
    let head = format!(
        "POST /hooks/pulse?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        big.len()
    );

    // Declaring a body the size of the whole budget and sending none of it holds nothing:
    // a stranger cannot shut others out by announcing, nor by opening many such requests.
    let mut announced = Vec::new();
    for _ in 0..70 {
        let mut idle = gw.raw_tls().await;
        idle.write_all(head.as_bytes()).await.unwrap();
        idle.flush().await.unwrap();
        announced.push(idle);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let beside = gw
        .site
        .client()
        .post(&url, &[], small("first").as_bytes())
        .await;
    assert_eq!(beside.status, 202, "announced bodies take no budget");

    // Bytes that have arrived do hold it.
    let mut slow = gw.raw_tls().await;
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&big.as_bytes()[..58_000]).await.unwrap();
    slow.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = gw
        .site
        .client()
        .post(&url, &[], small("second").as_bytes())
        .await;
    assert_eq!(
        refused.status, 503,
        "the budget is taken by the body still arriving"
    );
    assert!(refused.headers.contains_key("retry-after"));

    slow.write_all(&big.as_bytes()[58_000..]).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = slow.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 202"));
    let accepted = gw
        .site
        .client()
        .post(&url, &[], small("third").as_bytes())
        .await;
    assert_eq!(
        accepted.status, 202,
        "the budget is back once the first body is stored"
    );
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 3).await);
    drop(announced);
}

/// A CA, a client certificate it issued, and a client certificate it did not, as PEM:
/// (ca, trusted chain, trusted key, stranger chain, stranger key).
fn client_identities() -> (String, String, String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer};
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let client = |issuer: Option<&Issuer<'_, rcgen::KeyPair>>| {
        let mut params = CertificateParams::new(vec!["sender.example".to_owned()]).unwrap();
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = match issuer {
            Some(issuer) => params.signed_by(&key, issuer).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        (cert.pem(), key.serialize_pem())
    };
    let (trusted, trusted_key) = client(Some(&issuer));
    let (stranger, stranger_key) = client(None);
    (ca_cert.pem(), trusted, trusted_key, stranger, stranger_key)
}

#[tokio::test]
async fn with_client_ca_set_only_a_certificate_it_issued_gets_in_and_others_get_403() {
    let (ca, trusted, trusted_key, stranger, stranger_key) = client_identities();
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\ntls = { cert = \"certs/gateway.crt\", \
                key = \"certs/gateway.key\", client_ca = \"clients.pem\", create = true }\n"
        .to_owned()
        + &upstream_toml("u", &upstream.url("/in"), "")
        + &pulse_route("[\"u\"]");
    let site = Site::new(&toml);
    std::fs::write(site.dir.path().join("clients.pem"), ca).unwrap();
    let gateway = hookgate::gateway::Gateway::start(&site.config())
        .await
        .unwrap();
    let gw = Running { site, gateway };
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let cert = gw.site.cert_path();

    let answer = TestClient::with_identity(&cert, &stranger, &stranger_key)
        .post(&url, &[], br#"{"request_id":"m1"}"#)
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.json()["error"], "client_certificate_untrusted");

    let answer = gw
        .site
        .client()
        .post(&url, &[], br#"{"request_id":"m2"}"#)
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.json()["error"], "client_certificate_missing");
    assert_eq!(count(&gw.site.db_path(), "SELECT count(*) FROM events"), 0);

    let answer = TestClient::with_identity(&cert, &trusted, &trusted_key)
        .post(&url, &[], br#"{"request_id":"m3"}"#)
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert!(eventually(Duration::from_secs(10), || upstream.received().len() == 1).await);
    assert_eq!(
        upstream.received()[0].body,
        br#"{"request_id":"m3"}"#.as_slice()
    );
}

#[tokio::test]
async fn too_many_or_too_large_header_fields_get_431_over_both_protocols() {
    let (_upstream, gw) = gateway("max_headers = 16\nmax_header_size = \"8KiB\"").await;
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let names: Vec<String> = (0..20).map(|i| format!("x-filler-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let big = "a".repeat(12 * 1024);
    for client in [gw.site.client(), gw.site.h2_client()] {
        let answer = client.post(&url, &many, b"{}").await;
        assert_eq!(answer.status, 431);
        let answer = client.post(&url, &[("x-big", &big)], b"{}").await;
        assert_eq!(answer.status, 431);
        let answer = client
            .post(&url, &many[..4], br#"{"request_id":"fits"}"#)
            .await;
        assert!(answer.status.is_success(), "{}", answer.status);
    }
    assert_eq!(count(&gw.site.db_path(), "SELECT count(*) FROM events"), 1);
}

#[tokio::test]
async fn the_global_rate_counts_verified_requests_of_every_route_together() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let second = "[[routes]]\nname = \"other\"\npath = \"/hooks/other\"\n\
                  verify = { scheme = \"token\", query = \"token\", secrets = [{ file = \"pulse.token\" }] }\n\
                  upstreams = [\"u\"]\n";
    let toml = server_toml("global_rate = \"3/m\"")
        + &upstream_toml("u", &upstream.url("/in"), "")
        + &pulse_route("[\"u\"]")
        + second;
    let gw = Running::start(&toml).await;
    let client = gw.site.client();
    // Unsigned requests do not spend the global allowance: it is taken after verification.
    for _ in 0..5 {
        let answer = client
            .post(&gw.url("/hooks/pulse?token=no"), &[], b"{}")
            .await;
        assert_eq!(answer.status, 401);
    }
    let mut statuses = Vec::new();
    for (i, path) in ["pulse", "other", "pulse", "other"].iter().enumerate() {
        let url = gw.url(&format!("/hooks/{path}?token={TOKEN}"));
        let body = format!("{{\"request_id\":\"g{i}\"}}");
        let answer = client.post(&url, &[], body.as_bytes()).await;
        statuses.push(answer.status.as_u16());
        if answer.status == 429 {
            assert_eq!(answer.headers["retry-after"], "20");
        }
    }
    // The pulse route answers 503 when limited, the other route the default 429.
    assert_eq!(statuses, [202, 202, 202, 429]);
    assert_eq!(count(&gw.site.db_path(), "SELECT count(*) FROM events"), 3);
}

/// An HTTP/2 connection to the gateway, driven by a task of its own.
async fn h2_connection(
    gw: &Running,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let cert = CertificateDer::from_pem_file(gw.site.cert_path()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(gw.gateway.local_addr())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    (send, tokio::spawn(connection))
}

#[tokio::test]
async fn an_http2_stream_refused_before_its_body_ends_normally_once_the_body_is_sent() {
    let (_upstream, gw) = gateway("").await;
    let (send, _driver) = h2_connection(&gw).await;
    let mut send = send.ready().await.unwrap();
    let url = gw.url("/hooks/pulse?token=wrong");
    let request = http::Request::post(url.as_str()).body(()).unwrap();
    let (response, mut stream) = send.send_request(request, false).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered before the body")
        .unwrap();
    assert_eq!(response.status(), 401);

    // The sender goes on with its 200 KB, as a client that writes before it reads does: the
    // gateway takes them, and the stream is not reset under it.
    let mut left = 200_000usize;
    while left > 0 {
        stream.reserve_capacity(left);
        let granted = tokio::time::timeout(
            Duration::from_secs(10),
            std::future::poll_fn(|cx| stream.poll_capacity(cx)),
        )
        .await
        .expect("flow control opened")
        .expect("the stream is open")
        .expect("no reset");
        let n = granted.min(left);
        left -= n;
        stream
            .send_data(bytes::Bytes::from(vec![b'x'; n]), left == 0)
            .expect("the stream takes the body");
    }
    let body = response.into_body();
    let reset = tokio::time::timeout(
        Duration::from_millis(500),
        std::future::poll_fn(|cx| stream.poll_reset(cx)),
    )
    .await;
    assert!(reset.is_err(), "the stream was reset: {reset:?}");
    drop(body);
}

#[tokio::test]
async fn an_http2_rapid_reset_flood_ends_the_connection_and_others_are_still_served() {
    let (upstream, gw) = gateway("").await;
    let (mut send, driver) = h2_connection(&gw).await;

    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    for _ in 0..10_000 {
        let request = http::Request::post(url.as_str()).body(()).unwrap();
        let Ok(ready) = send.clone().ready().await else {
            break;
        };
        send = ready;
        let Ok((_, mut stream)) = send.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("the gateway closed the connection")
        .unwrap();
    let error = ended.expect_err("the connection ended in an error");
    assert_eq!(
        error.reason(),
        Some(h2::Reason::ENHANCE_YOUR_CALM),
        "{error}"
    );

    let answer = gw
        .site
        .h2_client()
        .post(&url, &[], br#"{"request_id":"after-reset"}"#)
        .await;
    assert_eq!(answer.status, 202);
    assert!(eventually(Duration::from_secs(10), || upstream.received().len() == 1).await);
}

#[tokio::test]
async fn the_allow_list_answers_403_before_anything_else_and_lets_its_networks_in() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let route = |name: &str, allow: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nallow = {allow}\n\
             verify = {{ scheme = \"token\", query = \"token\", secrets = [{{ file = \"pulse.token\" }}] }}\n\
             upstreams = [\"u\"]\n"
        )
    };
    let toml = server_toml("")
        + &upstream_toml("u", &upstream.url("/in"), "")
        + &route("closed", "[\"10.0.0.0/8\", \"2001:db8::/32\"]")
        + &route("open", "[\"127.0.0.0/8\"]");
    let gw = Running::start(&toml).await;
    let client = gw.site.client();
    let closed = gw.url(&format!("/hooks/closed?token={TOKEN}"));
    for (method, url) in [
        ("POST", closed.as_str()),
        ("GET", closed.as_str()),
        ("POST", &gw.url("/hooks/closed?token=wrong")),
    ] {
        let answer = client.request(method, url, &[], b"{}").await;
        assert_eq!(answer.status, 403, "{method} {url}");
        assert_eq!(answer.json()["error"], "forbidden");
    }
    let open = gw.url(&format!("/hooks/open?token={TOKEN}"));
    assert_eq!(client.post(&open, &[], b"{}").await.status, 202);
    assert_eq!(count(&gw.site.db_path(), "SELECT count(*) FROM events"), 1);
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_gets_408_and_is_not_stored() {
    let (_upstream, gw) = gateway("body_timeout = \"1s\"").await;
    let mut stream = gw.raw_tls().await;
    let head = format!(
        "POST /hooks/pulse?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 500\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(br#"{"request_id":"short"}"#)
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered after the body timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert_eq!(count(&gw.site.db_path(), "SELECT count(*) FROM events"), 0);
}

#[tokio::test]
async fn headers_dripped_a_byte_at_a_time_are_cut_off_at_the_header_timeout() {
    let (_upstream, gw) = gateway("header_timeout = \"1s\"").await;
    let mut stream = gw.raw_tls().await;
    let head = format!("POST /hooks/pulse?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\nx-slow: ");
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    // One byte every 200 ms would keep a per-read timer happy forever.
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream.write_all(b"a").await.is_err() || stream.flush().await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            // An answer (408) or the end of the stream: either way the gateway gave up.
            let _ = read;
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the connection was still open after 10 s of dripping"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// Sends one request on `stream` and reads the status line of its answer.
async fn status_on<S>(stream: &mut S) -> std::io::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let body = r#"{"request_id":"on-stream"}"#;
    let head = format!(
        "POST /hooks/pulse?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = vec![0u8; 512];
    let n = stream.read(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Asserts that a new connection is closed without an answer, and not left hanging.
async fn assert_closed_at_once(gw: &Running, served: &str) {
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = gw.try_raw_tls().await?;
        status_on(&mut stream).await
    })
    .await
    .expect("the extra connection was closed, not left hanging");
    assert!(
        refused.as_ref().is_ok_and(String::is_empty) || refused.is_err(),
        "{served}: {refused:?}"
    );
}

/// The status line a new connection gets, tried for up to 2.5 s while a slot comes free.
async fn served_again(gw: &Running) -> Option<String> {
    for _ in 0..50 {
        if let Ok(mut stream) = gw.try_raw_tls().await
            && let Ok(line) = status_on(&mut stream).await
            && !line.is_empty()
        {
            return Some(line);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn past_max_connections_new_connections_are_closed_and_open_ones_keep_working() {
    let (_upstream, gw) = gateway("max_connections = 3").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(gw.raw_tls().await);
    }
    assert_closed_at_once(&gw, "a fourth connection was served").await;
    // The connections already open are served...
    assert_eq!(
        status_on(&mut open[0]).await.unwrap(),
        "HTTP/1.1 202 Accepted"
    );
    // ...and a closed one frees its slot.
    drop(open.pop());
    let again = served_again(&gw).await;
    assert_eq!(again.as_deref(), Some("HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn one_client_holds_at_most_its_share_of_connections_and_others_are_served() {
    let (_upstream, gw) =
        gateway("max_connections_per_client = 2\ntrusted_proxies = [\"127.0.0.3/32\"]").await;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(gw.raw_tls().await);
    }
    // A trusted proxy carries many clients' connections, and is not held to one's share.
    let port = gw.gateway.local_addr().port();
    let from_proxy = std::net::Ipv4Addr::new(127, 0, 0, 3);
    let mut proxied = Vec::new();
    for _ in 0..3 {
        let mut stream = raw_tls_from(&gw.site.cert_path(), port, from_proxy)
            .await
            .unwrap();
        let line = status_on(&mut stream).await.unwrap();
        assert!(line.starts_with("HTTP/1.1 20"), "{line:?}");
        proxied.push(stream);
    }
    assert_closed_at_once(&gw, "a third connection from one address was served").await;

    // Another address is not held back by the first one's connections.
    let other = TestClient::bound_to(&gw.site.cert_path(), "127.0.0.2".parse().unwrap());
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let answer = other.post(&url, &[], br#"{"request_id":"other"}"#).await;
    assert_eq!(answer.status, 202);

    // A connection that closes gives its place back.
    drop(open.pop());
    let again = served_again(&gw).await;
    assert_eq!(
        again.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "the same event again"
    );
}

#[tokio::test]
async fn a_connection_idle_after_its_request_is_closed_after_the_idle_timeout() {
    let (_upstream, gw) = gateway("idle_timeout = \"1s\"").await;
    let mut stream = gw.raw_tls().await;
    assert_eq!(
        status_on(&mut stream).await.unwrap(),
        "HTTP/1.1 202 Accepted"
    );
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {read:?}"
    );
}

/// A ClientHello that offers TLS 1.1 at most (no `supported_versions` extension), with
/// suites the gateway would take over TLS 1.2, so only the version is wrong.
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[0x42; 32]);
    hello.push(0);
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]);
    hello.extend_from_slice(&[0x01, 0x00]);
    // Signature algorithms, groups and point formats, as a real client sends them.
    let extensions: &[u8] = &[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, //
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, //
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,
    ];
    hello.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    hello.extend_from_slice(extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn a_client_that_offers_only_tls_1_1_is_refused_with_a_protocol_version_alert() {
    let (_upstream, gw) = gateway("").await;
    let mut stream = tokio::net::TcpStream::connect(gw.gateway.local_addr())
        .await
        .unwrap();
    stream.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut answer))
        .await
        .expect("answered at once")
        .unwrap();
    // An alert record: level fatal (2), description protocol_version (70).
    assert_eq!(answer[0], 0x15, "{answer:?}");
    assert_eq!(&answer[5..], &[2, 70], "{answer:?}");
}
