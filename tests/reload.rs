//! Reloading the configuration: routes, secrets, upstreams and certificates change without a
//! restart; a change that would strand deliveries, or needs a restart, is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use hookgate::config::Config;
use hookgate::gateway::ReloadError;
use support::*;

fn config_with(site: &Site, toml: &str) -> Config {
    std::fs::write(&site.config_path, toml).unwrap();
    Config::load(&site.config_path).unwrap()
}

#[tokio::test]
async fn a_reload_swaps_secrets_routes_and_upstreams_without_a_restart() {
    let first = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let second = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let before =
        server_toml("") + &upstream_toml("u", &first.url("/"), "") + &pulse_route("[\"u\"]");
    let mut gw = Running::start(&before).await;
    let client = gw.site.client();
    let base = gw.url("/hooks/pulse");
    let post = |token: &str, id: &str| {
        let url = format!("{base}?token={token}");
        let body = format!("{{\"request_id\":\"{id}\"}}");
        let client = &client;
        async move {
            client
                .post(&url, &[], body.as_bytes())
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(post(TOKEN, "r1").await, 202);
    // Delivered before the reload; anything still queued at a reload goes to the new URL.
    assert!(eventually(Duration::from_secs(5), || first.accepted().len() == 1).await);

    std::fs::write(
        gw.site.dir.path().join("pulse.token"),
        "rotated-token-123456",
    )
    .unwrap();
    let after = server_toml("")
        + &upstream_toml("u", &second.url("/"), "")
        + &pulse_route("[\"u\"]")
        + "[[routes]]\nname = \"gh\"\npath = \"/hooks/gh\"\nverify = { scheme = \"github\", secrets = [\"s\"] }\nupstreams = [\"u\"]\n";
    let config = config_with(&gw.site, &after);
    gw.gateway.reload(&config).await.unwrap();

    assert_eq!(
        post(TOKEN, "r2").await,
        401,
        "the old token no longer passes"
    );
    assert_eq!(post("rotated-token-123456", "r3").await, 202);
    let gh = base.replace("/hooks/pulse", "/hooks/gh");
    let unsigned = client.post(&gh, &[], b"{}").await;
    assert_eq!(unsigned.status, 401, "the new route exists and verifies");
    let arrived = eventually(Duration::from_secs(5), || second.accepted().len() == 1).await;
    let states = count(
        &gw.site.db_path(),
        "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'",
    );
    assert!(
        arrived,
        "first {} second {} pending {states}",
        first.received().len(),
        second.received().len()
    );
    assert_eq!(
        first.accepted().len(),
        1,
        "r1 went to the old URL, r3 to the new one"
    );
}

#[tokio::test]
async fn removing_an_upstream_with_pending_deliveries_is_refused_and_the_old_one_serves_on() {
    let down = "[upstreams.down]\nurl = \"http://127.0.0.1:9/\"\nbreaker = { failures = 1, cooldown = \"1h\" }\n";
    let up = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let before = server_toml("")
        + down
        + &upstream_toml("up", &up.url("/"), "")
        + &pulse_route("[\"down\", \"up\"]");
    let mut gw = Running::start(&before).await;
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    assert_eq!(
        gw.site
            .client()
            .post(&url, &[], br#"{"request_id":"p"}"#)
            .await
            .status,
        202
    );

    let without =
        server_toml("") + &upstream_toml("up", &up.url("/"), "") + &pulse_route("[\"up\"]");
    let config = config_with(&gw.site, &without);
    let refused = gw.gateway.reload(&config).await.unwrap_err();
    assert!(
        matches!(refused, ReloadError::PendingForRemoved { pending: 1, .. }),
        "{refused}"
    );

    let moved = server_toml("listen = \"127.0.0.1:1\"") + down + &pulse_route("[\"down\"]");
    let moved = moved.replace("listen = \"127.0.0.1:0\"\n", "");
    let refused = gw
        .gateway
        .reload(&config_with(&gw.site, &moved))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ReloadError::NeedsRestart("server.listen")),
        "{refused}"
    );
    let more = server_toml("max_connections = 7") + down + &pulse_route("[\"down\"]");
    let refused = gw
        .gateway
        .reload(&config_with(&gw.site, &more))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ReloadError::NeedsRestart("server.max_connections")),
        "{refused}"
    );

    let answer = gw
        .site
        .client()
        .post(&url, &[], br#"{"request_id":"q"}"#)
        .await;
    assert_eq!(answer.status, 202, "the running configuration still serves");
}

#[tokio::test]
async fn a_reload_serves_a_new_certificate_to_new_connections() {
    let up = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("") + &upstream_toml("u", &up.url("/"), "") + &pulse_route("[\"u\"]");
    let mut gw = Running::start(&toml).await;
    let old_cert = std::fs::read(gw.site.cert_path()).unwrap();

    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(gw.site.cert_path(), pair.cert.pem()).unwrap();
    std::fs::write(
        gw.site.dir.path().join("certs/gateway.key"),
        pair.signing_key.serialize_pem(),
    )
    .unwrap();
    let config = Config::load(&gw.site.config_path).unwrap();
    gw.gateway.reload(&config).await.unwrap();

    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let answer = gw
        .site
        .client()
        .post(&url, &[], br#"{"request_id":"c"}"#)
        .await;
    assert_eq!(
        answer.status, 202,
        "a client trusting the new certificate connects"
    );
    let old_trust = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(old_trust.path(), old_cert).unwrap();
    let stale = TestClient::new(old_trust.path(), false);
    assert!(
        stale
            .try_post(&url, br#"{"request_id":"d"}"#)
            .await
            .is_none(),
        "the old certificate is gone"
    );
}

#[tokio::test]
async fn sighup_refuses_a_broken_file_and_applies_a_good_one() {
    let up = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("") + &upstream_toml("u", &up.url("/"), "") + &pulse_route("[\"u\"]");
    let site = Site::new(&toml);
    let (gateway, port) = run_logged(&site);
    let hangup = || {
        let pid = gateway.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    let client = site.client();
    let base = format!("https://localhost:{port}/hooks");

    std::fs::write(
        &site.config_path,
        toml.replace("[[routes]]", "[[routes]]\nbogus = 1"),
    )
    .unwrap();
    hangup();
    assert!(
        eventually(Duration::from_secs(5), || gateway
            .logged(&["reload refused", "bogus"]))
        .await
    );
    let url = format!("{base}/pulse?token={TOKEN}");
    assert_eq!(
        client
            .post(&url, &[], br#"{"request_id":"a"}"#)
            .await
            .status,
        202
    );

    let more = toml.clone()
        + "[[routes]]\nname = \"gh\"\npath = \"/hooks/gh\"\nverify = { scheme = \"github\", secrets = [\"s\"] }\nupstreams = [\"u\"]\n";
    std::fs::write(&site.config_path, more).unwrap();
    hangup();
    assert!(
        eventually(Duration::from_secs(5), || gateway
            .logged(&["configuration reloaded"]))
        .await
    );
    assert_eq!(
        client.post(&format!("{base}/gh"), &[], b"{}").await.status,
        401
    );
    assert_eq!(
        client
            .post(&url, &[], br#"{"request_id":"b"}"#)
            .await
            .status,
        202
    );
    assert!(eventually(Duration::from_secs(5), || up.accepted().len() == 2).await);
}

#[tokio::test]
async fn json_logs_carry_one_line_per_event_and_delivery_with_their_fields() {
    let up = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + "[log]\nformat = \"json\"\nlevel = \"info\"\n"
        + &upstream_toml("u", &up.url("/"), "")
        + &pulse_route("[\"u\"]");
    let site = Site::new(&toml);
    let (gateway, port) = run_logged(&site);
    let url = format!("https://localhost:{port}/hooks/pulse?token={TOKEN}");
    let answer = site
        .client()
        .post(&url, &[], br#"{"request_id":"j"}"#)
        .await;
    let id = answer.json()["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(5), || gateway
            .logged(&["\"delivered\""]))
        .await
    );

    let lines = gateway.lines.lock().unwrap().clone();
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    let find = |message: &str| {
        json.iter()
            .find(|v| v["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in {lines:#?}"))
            .clone()
    };
    let accepted = find("accepted");
    assert_eq!(accepted["fields"]["route"], "pulse");
    assert_eq!(accepted["fields"]["event_id"], id.as_str());
    assert!(accepted["fields"]["latency_ms"].is_u64());
    let delivered = find("delivered");
    assert_eq!(delivered["fields"]["upstream"], "u");
    assert_eq!(delivered["fields"]["event_id"], id.as_str());
    assert_eq!(delivered["fields"]["attempt"], 1);
    assert_eq!(delivered["fields"]["status"], 200);
    assert_eq!(delivered["level"], "INFO");
}

#[tokio::test]
async fn reloads_under_load_never_send_an_event_twice() {
    let slow = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + &upstream_toml("u", &slow.url("/"), "rate = \"4/s\"\nconcurrency = 4")
        + &pulse_route("[\"u\"]");
    let mut gw = Running::start(&toml).await;
    let client = gw.site.client();
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    for i in 0..16 {
        let body = format!("{{\"request_id\":\"l{i}\"}}");
        assert_eq!(client.post(&url, &[], body.as_bytes()).await.status, 202);
    }
    let config = Config::load(&gw.site.config_path).unwrap();
    // Each reload lands while the scheduler waits on the rate with deliveries in hand.
    for _ in 0..12 {
        gw.gateway.reload(&config).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert!(eventually(Duration::from_secs(15), || slow.accepted().len() >= 16).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids: Vec<String> = slow
        .received()
        .iter()
        .map(|r| r.header("hookgate-event-id").to_owned())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), total), (16, 16), "every event once, none twice");
}

#[tokio::test]
async fn a_request_read_across_a_reload_that_removes_its_upstream_is_warned_about() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (u, v) = (
        SampleUpstream::start(Behaviour::Accept).await.unwrap(),
        SampleUpstream::start(Behaviour::Accept).await.unwrap(),
    );
    let both = server_toml("")
        + &upstream_toml("u", &u.url("/"), "")
        + &upstream_toml("v", &v.url("/"), "")
        + &pulse_route("[\"u\", \"v\"]");
    let site = Site::new(&both);
    let (gateway, port) = run_logged_at(&site, "info");

    // A request whose body is still on its way...
    let body = br#"{"request_id":"across"}"#;
    let mut slow = raw_tls_to(&site.cert_path(), port).await.unwrap();
    let head = format!(
        "POST /hooks/pulse?token={TOKEN} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..5]).await.unwrap();
    slow.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // ...while a reload removes `v`, which has nothing pending yet, so it is allowed.
    let only_u = server_toml("") + &upstream_toml("u", &u.url("/"), "") + &pulse_route("[\"u\"]");
    std::fs::write(&site.config_path, only_u).unwrap();
    let pid = gateway.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        eventually(Duration::from_secs(5), || gateway
            .logged(&["configuration reloaded"]))
        .await
    );

    // The request finishes under the configuration it started with: a delivery for `v`.
    slow.write_all(&body[5..]).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = slow.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    drop(slow);
    assert!(
        eventually(Duration::from_secs(10), || gateway
            .logged(&["deliveries for removed upstreams", "v"]))
        .await,
        "no warning about the delivery left for v"
    );
    assert!(eventually(Duration::from_secs(10), || u.accepted().len() == 1).await);
    assert!(v.received().is_empty());
}

#[tokio::test]
async fn an_attempt_cut_off_by_a_reload_is_sent_again_by_the_next_scheduler() {
    let hanging = SampleUpstream::start(Behaviour::Slow(Duration::from_secs(60)))
        .await
        .unwrap();
    let healthy = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let upstream = |url: String| format!("[upstreams.u]\nurl = \"{url}\"\ntimeout = \"50s\"\n");
    let before = server_toml("") + &upstream(hanging.url("/")) + &pulse_route("[\"u\"]");
    let mut gw = Running::start(&before).await;
    let client = gw.site.client();
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let answer = client.post(&url, &[], br#"{"request_id":"cut"}"#).await;
    assert_eq!(answer.status, 202);
    // The attempt is under way at the hanging upstream when the reload points `u` elsewhere.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server_toml("") + &upstream(healthy.url("/")) + &pulse_route("[\"u\"]");
    gw.gateway
        .reload(&config_with(&gw.site, &after))
        .await
        .unwrap();

    // The old scheduler gives its attempt ten seconds, then cuts it off; the delivery it
    // held is given back and sent by the new scheduler.
    assert!(
        eventually(Duration::from_secs(25), || healthy.accepted().len() == 1).await,
        "the cut-off delivery was never sent again"
    );
    let db = gw.site.db_path();
    let delivered = "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'";
    assert!(eventually(Duration::from_secs(5), || count(&db, delivered) == 1).await);
}

#[tokio::test]
async fn dead_letters_of_an_upstream_removed_by_a_reload_cannot_be_replayed() {
    use support::admin::{ADMIN_TOKEN, admin_call, admin_ok, admin_toml, admin_until, len};

    let good = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let refusing = SampleUpstream::start(Behaviour::Always(http::StatusCode::BAD_REQUEST))
        .await
        .unwrap();
    let toml = |with_bad: bool| {
        let mut toml = server_toml("") + &admin_toml("127.0.0.1:0");
        toml += &upstream_toml("good", &good.url("/"), "");
        if with_bad {
            toml += &upstream_toml("bad", &refusing.url("/"), "");
            toml + &pulse_route("[\"good\", \"bad\"]")
        } else {
            toml + &pulse_route("[\"good\"]")
        }
    };
    let mut gw = Running::start(&toml(true)).await;
    let admin = gw.gateway.admin_addr().unwrap();
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let answer = gw
        .site
        .client()
        .post(&url, &[], br#"{"request_id":"d1"}"#)
        .await;
    assert_eq!(answer.status, 202);
    let dead = admin_until(admin, "/api/deliveries?state=dead", |v| {
        len(v, "deliveries") == 1
    })
    .await;
    let id = dead["deliveries"][0]["id"].as_i64().unwrap();

    gw.gateway
        .reload(&config_with(&gw.site, &toml(false)))
        .await
        .unwrap();
    let one = admin_call(
        admin,
        "POST",
        &format!("/api/deliveries/{id}/retry"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(one.status, 409, "{:?}", one.body);
    let all = admin_ok(admin, "POST", "/api/deliveries/retry?state=dead").await;
    assert_eq!(all["retried"], 0);
    let paused = admin_call(admin, "POST", "/api/upstreams/bad/pause", Some(ADMIN_TOKEN)).await;
    assert_eq!(paused.status, 404, "{:?}", paused.body);
    let db = gw.site.db_path();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'dead'"),
        1
    );
}

#[tokio::test]
async fn attempts_still_under_way_at_a_reload_count_against_the_new_scheduler_s_concurrency() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    // An upstream that takes every connection and never answers: each attempt in flight
    // holds a connection of its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let toml = server_toml("")
        + &format!("[upstreams.u]\nurl = \"http://{addr}/\"\ntimeout = \"50s\"\nconcurrency = 1\n")
        + &pulse_route("[\"u\"]");
    let mut gw = Running::start(&toml).await;
    let client = gw.site.client();
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    for id in ["c1", "c2"] {
        let body = format!("{{\"request_id\":\"{id}\"}}");
        assert_eq!(client.post(&url, &[], body.as_bytes()).await.status, 202);
    }
    assert!(
        eventually(Duration::from_secs(5), || connections
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    let config = Config::load(&gw.site.config_path).unwrap();
    for _ in 0..3 {
        gw.gateway.reload(&config).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "with concurrency = 1, the second event waits for the first attempt"
    );
    silent.abort();
}
