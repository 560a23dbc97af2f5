//! Other senders end to end: their signatures checked through the real gateway, a Standard
//! Webhooks cross-check with the reference library, compressed bodies, signed callback URLs,
//! and the metrics an operator would scrape afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use support::*;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_WHSEC: &str = "whsec_aGVsbG8gd29ybGQgdGhpcyBpcyBhIGtleQ==";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

async fn gateway_with(routes: &str) -> (SampleUpstream, Running) {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + "[admin]\nlisten = \"127.0.0.1:0\"\n"
        + &upstream_toml("sink", &upstream.url("/sink"), "")
        + routes;
    let gw = Running::start(&toml).await;
    (upstream, gw)
}

fn route(name: &str, verify: &str, extra: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\npath = \"/hooks/{name}\"\nverify = {verify}\n{extra}\nupstreams = [\"sink\"]\n"
    )
}

/// Signs with the Standard Webhooks reference library (PyPI `standardwebhooks`).
fn reference_sign(secret: &str, id: &str, timestamp: u64, body: &str) -> String {
    let script = "import sys, datetime\n\
        from standardwebhooks.webhooks import Webhook\n\
        secret, msg_id, ts, body = sys.argv[1:5]\n\
        when = datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc)\n\
        print(Webhook(secret).sign(msg_id, when, body))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, secret, id, &timestamp.to_string(), body])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the reference library is missing (pip install standardwebhooks): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A gateway with a Standard Webhooks route at `/hooks/svix`, keyed on `webhook-id`.
async fn svix_keyed_on_webhook_id() -> (SampleUpstream, Running) {
    let routes = route(
        "svix",
        &format!("{{ scheme = \"standard-webhooks\", secrets = [\"{WHSEC}\"] }}"),
        "dedup = { key = \"header:webhook-id\" }",
    );
    gateway_with(&routes).await
}

#[tokio::test]
async fn a_webhook_signed_by_the_standard_webhooks_reference_library_is_accepted() {
    let (upstream, gw) = svix_keyed_on_webhook_id().await;
    let client = gw.site.client();
    let body = String::from_utf8(fixture("success.json")).unwrap();
    let ts = now();

    let good = reference_sign(WHSEC, "msg_1", ts, &body);
    let ts_text = ts.to_string();
    let headers = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts_text.as_str()),
        ("webhook-signature", good.as_str()),
    ];
    let answer = client
        .post(&gw.url("/hooks/svix"), &headers, body.as_bytes())
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);

    let wrong = reference_sign(OTHER_WHSEC, "msg_2", ts, &body);
    let headers = [
        ("webhook-id", "msg_2"),
        ("webhook-timestamp", ts_text.as_str()),
        ("webhook-signature", wrong.as_str()),
    ];
    let answer = client
        .post(&gw.url("/hooks/svix"), &headers, body.as_bytes())
        .await;
    assert_eq!(answer.status, 401);

    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 1).await);
    assert_eq!(upstream.accepted()[0].body, body.as_bytes());
}

#[tokio::test]
async fn svix_header_names_and_a_stale_timestamp_are_handled() {
    let routes = route(
        "svix",
        &format!(
            "{{ scheme = \"standard-webhooks\", secrets = [\"{WHSEC}\"], tolerance = \"5m\" }}"
        ),
        "dedup = { key = \"header:svix-id\" }",
    );
    let (_upstream, gw) = gateway_with(&routes).await;
    let client = gw.site.client();
    let body = "{\"type\":\"invoice.paid\"}";

    let ts = now();
    let sig = reference_sign(WHSEC, "msg_svix", ts, body);
    let ts_text = ts.to_string();
    let headers = [
        ("svix-id", "msg_svix"),
        ("svix-timestamp", ts_text.as_str()),
        ("svix-signature", sig.as_str()),
    ];
    assert_eq!(
        client
            .post(&gw.url("/hooks/svix"), &headers, body.as_bytes())
            .await
            .status,
        202
    );

    let old = now() - 3_600;
    let sig = reference_sign(WHSEC, "msg_old", old, body);
    let old_text = old.to_string();
    let headers = [
        ("webhook-id", "msg_old"),
        ("webhook-timestamp", old_text.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let answer = client
        .post(&gw.url("/hooks/svix"), &headers, body.as_bytes())
        .await;
    assert_eq!(answer.status, 401, "a replay an hour old is refused");
}

#[tokio::test]
async fn a_key_on_webhook_id_holds_for_svix_names_and_an_unsigned_copy_is_refused() {
    let (upstream, gw) = svix_keyed_on_webhook_id().await;
    let client = gw.site.client();
    let url = gw.url("/hooks/svix");
    let body = "{\"type\":\"invoice.paid\"}";
    let signed_at = now();
    let ts = signed_at.to_string();
    let sig_a = reference_sign(WHSEC, "msg_a", signed_at, body);
    let svix = [
        ("svix-id", "msg_a"),
        ("svix-timestamp", ts.as_str()),
        ("svix-signature", sig_a.as_str()),
    ];

    let first = client.post(&url, &svix, body.as_bytes()).await;
    assert_eq!(first.status, 202);
    let again = client.post(&url, &svix, body.as_bytes()).await;
    assert_eq!(again.status, 200, "the key was read from svix-id");
    assert_eq!(again.json()["duplicate"], true);

    // The signed request copied with a `webhook-id` nobody signed: a new event if the key
    // were read from it, and the genuine `msg_b` later taken for its duplicate.
    for chosen in ["attacker-1", "msg_b"] {
        let copied = [svix.as_slice(), &[("webhook-id", chosen)]].concat();
        let answer = client.post(&url, &copied, body.as_bytes()).await;
        assert_eq!(answer.status, 401, "{chosen}: {}", answer.json());
        assert_eq!(answer.json()["message"], "svix-id and webhook-id differ");
    }
    let signed_at = now();
    let sig_b = reference_sign(WHSEC, "msg_b", signed_at, body);
    let ts_b = signed_at.to_string();
    let genuine = [
        ("webhook-id", "msg_b"),
        ("webhook-timestamp", ts_b.as_str()),
        ("webhook-signature", sig_b.as_str()),
    ];
    assert_eq!(
        client.post(&url, &genuine, body.as_bytes()).await.status,
        202
    );

    assert!(eventually(Duration::from_secs(10), || upstream.accepted().len() >= 2).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Credential headers are not passed on, so the two are told apart by count alone.
    assert_eq!(upstream.accepted().len(), 2, "msg_a once and msg_b once");
}

#[tokio::test]
async fn github_and_generic_hmac_signatures_are_checked_with_rotated_secrets() {
    let routes = route(
        "github",
        "{ scheme = \"github\", secrets = [\"new-secret\", \"old-secret\"] }",
        "",
    ) + &route(
        "hmac",
        "{ scheme = \"hmac\", header = \"X-Signature\", prefix = \"sha256=\", secrets = [\"k1\"] }",
        "",
    );
    let (upstream, gw) = gateway_with(&routes).await;
    let client = gw.site.client();
    let body = fixture("success-pro.json");

    for secret in ["new-secret", "old-secret"] {
        let sig = format!("sha256={}", hmac_hex(secret.as_bytes(), &body));
        let answer = client
            .post(
                &gw.url("/hooks/github"),
                &[("x-hub-signature-256", &sig)],
                &body,
            )
            .await;
        assert!(answer.status.is_success(), "{secret}: {}", answer.status);
    }
    let sig = format!("sha256={}", hmac_hex(b"retired", &body));
    let answer = client
        .post(
            &gw.url("/hooks/github"),
            &[("x-hub-signature-256", &sig)],
            &body,
        )
        .await;
    assert_eq!(answer.status, 401);

    let upper = format!("sha256={}", hmac_hex(b"k1", &body).to_uppercase());
    let answer = client
        .post(&gw.url("/hooks/hmac"), &[("x-signature", &upper)], &body)
        .await;
    assert_eq!(answer.status, 202, "hex compares case-insensitively");
    let answer = client
        .post(
            &gw.url("/hooks/hmac"),
            &[("x-signature", "sha256=zz")],
            &body,
        )
        .await;
    assert_eq!(answer.status, 401, "a malformed signature is a clean 401");

    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 2).await);
    assert!(upstream.accepted().iter().all(|r| r.body == body));
}

#[tokio::test]
async fn a_dedup_header_sent_twice_is_refused_and_one_beyond_ascii_is_kept_as_text() {
    let routes = route(
        "keyed",
        "{ scheme = \"token\", header = \"x-token\", secrets = [\"t0ken\"] }",
        "dedup = { key = \"header:x-request-id\" }",
    );
    let (upstream, gw) = gateway_with(&routes).await;
    let client = gw.site.client();
    let body = fixture("success.json");
    let url = gw.url("/hooks/keyed");

    let twice = [
        ("x-token", "t0ken"),
        ("x-request-id", "a1"),
        ("x-request-id", "b1"),
    ];
    let answer = client.post(&url, &twice, &body).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"], "bad_dedup_header");

    for (id, status) in [("café-1", 202), ("café-2", 202), ("café-1", 200)] {
        let answer = client
            .post(&url, &[("x-token", "t0ken"), ("x-request-id", id)], &body)
            .await;
        assert_eq!(answer.status, status, "{id}");
    }
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 2).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        upstream.accepted().len(),
        2,
        "the refused request is not delivered"
    );
}

#[tokio::test]
async fn gzip_bodies_verify_over_the_bytes_the_route_names_and_arrive_inflated() {
    let hmac = "{ scheme = \"hmac\", header = \"X-Signature\", secrets = [\"k\"] }";
    let routes = route("wire", hmac, "signature_over = \"wire\"")
        + &route(
            "inflated",
            hmac,
            "signature_over = \"inflated\"\nmax_body = \"64KiB\"",
        );
    let (upstream, gw) = gateway_with(&routes).await;
    let client = gw.site.client();
    let body = fixture("success.json");
    let packed = gzip(&body);

    let sig = hmac_hex(b"k", &packed);
    let headers = [("x-signature", sig.as_str()), ("content-encoding", "gzip")];
    assert_eq!(
        client
            .post(&gw.url("/hooks/wire"), &headers, &packed)
            .await
            .status,
        202
    );

    let sig = hmac_hex(b"k", &body);
    let headers = [("x-signature", sig.as_str()), ("content-encoding", "gzip")];
    assert_eq!(
        client
            .post(&gw.url("/hooks/inflated"), &headers, &packed)
            .await
            .status,
        202
    );
    assert_eq!(
        client
            .post(&gw.url("/hooks/wire"), &headers, &packed)
            .await
            .status,
        401
    );

    let headers = [("x-signature", sig.as_str()), ("content-encoding", "br")];
    let answer = client
        .post(&gw.url("/hooks/inflated"), &headers, &packed)
        .await;
    assert_eq!(
        (answer.status.as_u16(), answer.json()["error"].clone()),
        (415, "unsupported_encoding".into())
    );

    let bomb = gzip(&vec![b' '; 8 << 20]);
    let sig = hmac_hex(b"k", &vec![b' '; 8 << 20]);
    let headers = [("x-signature", sig.as_str()), ("content-encoding", "gzip")];
    let answer = client
        .post(&gw.url("/hooks/inflated"), &headers, &bomb)
        .await;
    assert_eq!(
        answer.status,
        413,
        "{} bytes that inflate to 8 MiB",
        bomb.len()
    );

    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 2).await);
    assert!(
        upstream.accepted().iter().all(|r| r.body == body),
        "upstreams get the inflated bytes"
    );
}

#[tokio::test]
async fn a_compressed_body_is_inflated_only_once_its_wire_signature_holds_and_within_budget() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let hmac = "{ scheme = \"hmac\", header = \"X-Signature\", secrets = [\"k\"] }";
    let toml = |budget: &str| {
        server_toml(&format!(
            "max_body = \"1MiB\"\nmax_inflight_body = \"{budget}\""
        )) + &upstream_toml("sink", &upstream.url("/sink"), "")
            + &route("wire", hmac, "")
    };
    let gw = Running::start(&toml("1536KiB")).await;
    let client = gw.site.client();
    let bomb = gzip(&vec![0; 8 << 20]);
    let gzipped = |sig: &str| {
        [
            ("x-signature", sig.to_owned()),
            ("content-encoding", "gzip".into()),
        ]
    };
    let post = |headers: [(&'static str, String); 2], body: Vec<u8>| {
        let (client, url) = (&client, gw.url("/hooks/wire"));
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            client.post(&url, &headers, &body).await.status.as_u16()
        }
    };

    // Unsigned, it is refused as it arrived: nothing is inflated for a stranger.
    assert_eq!(post(gzipped(&"0".repeat(64)), bomb.clone()).await, 401);
    // Signed, it inflates past the cap.
    assert_eq!(
        post(gzipped(&hmac_hex(b"k", &bomb)), bomb.clone()).await,
        413
    );
    let small = gzip(&fixture("success.json"));
    assert_eq!(
        post(gzipped(&hmac_hex(b"k", &small)), small.clone()).await,
        202
    );
    gw.gateway.shutdown().await;

    // What is inflated is charged beside the wire bytes as it grows: under a budget of one
    // cap, a small compressed body passes, one whose wire and inflated bytes together pass
    // the budget does not, and a plain body of the same size does.
    let tight = Running::start(&toml("1MiB")).await;
    let client = tight.site.client();
    let signed_gzip = |body: &[u8]| {
        [
            ("x-signature", hmac_hex(b"k", body)),
            ("content-encoding", "gzip".to_owned()),
        ]
    };
    let url = tight.url("/hooks/wire");
    let send = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let (client, url) = (&client, &url);
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            client.post(url, &headers, &body).await.status.as_u16()
        }
    };
    assert_eq!(send(signed_gzip(&small).to_vec(), small.clone()).await, 202);
    // 600 KiB that do not compress: about 600 KiB on the wire and 600 KiB inflated.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..600 << 10)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let packed = gzip(&noise);
    assert!(packed.len() > 590 << 10);
    assert_eq!(send(signed_gzip(&packed).to_vec(), packed).await, 503);
    let plain = vec![("x-signature", hmac_hex(b"k", &noise))];
    assert_eq!(send(plain, noise).await, 202);
}

#[tokio::test]
async fn a_minted_callback_url_is_accepted_until_tampered_with_or_mismatched() {
    let routes = route(
        "pulse",
        "{ scheme = \"signed-url\", secrets = [\"url-key-0123456789\"], match_extra = true }",
        "dedup = { key = \"json:/request_id\" }",
    );
    let (upstream, gw) = gateway_with(&routes).await;
    let client = gw.site.client();
    let config = gw.site.config();
    let verifier = &config.routes[0].verifier;
    let base = gw.url("/hooks/pulse");
    let extra = vec![("case_id".to_owned(), "42".to_owned())];
    let url = verifier
        .callback_url(&base, now() + 3_600, &extra)
        .unwrap()
        .unwrap();

    let body = fixture("success.json");
    assert_eq!(client.post(&url, &[], &body).await.status, 202);

    let other_case = fixture("failed.json");
    let answer = client.post(&url, &[], &other_case).await;
    assert_eq!(answer.status, 401, "case_id 43 does not match the bound 42");

    let tampered = url.replace("case_id=42", "case_id=43");
    assert_eq!(client.post(&tampered, &[], &other_case).await.status, 401);

    let expired = verifier
        .callback_url(&base, now() - 10, &extra)
        .unwrap()
        .unwrap();
    assert_eq!(client.post(&expired, &[], &body).await.status, 401);

    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 1).await);
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let (upstream, gw) = gateway_with(&pulse_route("[\"sink\"]")).await;
    let client = gw.site.client();
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let body = fixture("success.json");
    client.post(&url, &[], &body).await;
    client.post(&url, &[], &body).await;
    client
        .post(&gw.url("/hooks/pulse?token=nope"), &[], &body)
        .await;
    client.post(&gw.url("/nowhere"), &[], &body).await;
    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 1).await);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let admin = gw.gateway.admin_addr().unwrap();
    let text = plain_get(admin, "/metrics").await;
    for line in [
        "hookgate_requests_total{route=\"pulse\",outcome=\"accepted\"} 1",
        "hookgate_requests_total{route=\"pulse\",outcome=\"duplicate\"} 1",
        "hookgate_requests_total{route=\"pulse\",outcome=\"unauthorized\"} 1",
        "hookgate_requests_total{route=\"none\",outcome=\"not_found\"} 1",
        "hookgate_verify_failures_total{route=\"pulse\",reason=\"mismatch\"} 1",
        "hookgate_duplicates_total{route=\"pulse\"} 1",
        "hookgate_delivery_attempts_total{upstream=\"sink\",outcome=\"delivered\"} 1",
        "hookgate_queue_deliveries{upstream=\"sink\",state=\"delivered\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // The purge at start, the accepted event, its duplicate and the attempt were committed,
    // together or apart; nothing else was.
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let commits = value("hookgate_store_commit_seconds_count");
    assert!((1.0..=4.0).contains(&commits), "{commits} commits");
    assert_eq!(value("hookgate_store_commit_requests_sum"), 4.0);
    assert_eq!(value("hookgate_store_commit_requests_count"), commits);
    assert!(!text.contains(TOKEN));
    assert!(plain_get(admin, "/readyz").await.contains("ready"));
}

/// A GET over plain HTTP/1.1 to the admin listener.
async fn plain_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn signatures_cover_the_exact_bytes_whatever_their_encoding_over_http1_and_http2() {
    let routes = route(
        "exact",
        "{ scheme = \"hmac\", header = \"X-Signature\", secrets = [\"k\"] }",
        "dedup = { key = \"body\" }",
    );
    let (upstream, gw) = gateway_with(&routes).await;
    let bodies: [&[u8]; 4] = [
        b"{\"name\":\"Caf\\u00e9\",\"n\":1}",
        b"{\"name\":\"Caf\xe9\"}",
        b"{\"status\":\"success\"}\r\n",
        "{\"text\":\"Grüße 👋\"}".as_bytes(),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let client = if i % 2 == 0 {
            gw.site.client()
        } else {
            gw.site.h2_client()
        };
        let sig = hmac_hex(b"k", body);
        let headers = [
            ("X-SIGNATURE", sig.as_str()),
            ("content-type", "application/json; charset=ISO-8859-1"),
        ];
        let answer = client.post(&gw.url("/hooks/exact"), &headers, body).await;
        assert_eq!(answer.status, 202, "body {i}");
    }

    // The same JSON, re-serialised: other bytes, so the signature no longer matches.
    let original = br#"{"a": 1, "b": [1, 2]}"#;
    let reserialised =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(original).unwrap())
            .unwrap();
    let sig = hmac_hex(b"k", original);
    let answer = gw
        .site
        .client()
        .post(
            &gw.url("/hooks/exact"),
            &[("x-signature", &sig)],
            &reserialised,
        )
        .await;
    assert_eq!(answer.status, 401);

    assert!(
        eventually(Duration::from_secs(5), || upstream.accepted().len()
            == bodies.len())
        .await
    );
    let mut got: Vec<Vec<u8>> = upstream
        .accepted()
        .iter()
        .map(|r| r.body.to_vec())
        .collect();
    let mut sent: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_vec()).collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "forwarded byte for byte");
    assert!(
        upstream
            .accepted()
            .iter()
            .all(|r| r.header("content-type") == "application/json; charset=ISO-8859-1")
    );
}

/// Verifies with the Standard Webhooks reference library; returns whether it accepted.
fn reference_verifies(secret: &str, received: &hookgate::cli::upstream::Received) -> bool {
    let script = "import sys\n\
        from standardwebhooks.webhooks import Webhook\n\
        secret, msg_id, ts, sig = sys.argv[1:5]\n\
        body = sys.stdin.buffer.read()\n\
        headers = {'webhook-id': msg_id, 'webhook-timestamp': ts, 'webhook-signature': sig}\n\
        try:\n    Webhook(secret).verify(body, headers)\nexcept Exception as e:\n    print(e); sys.exit(1)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, secret])
        .args(["webhook-id", "webhook-timestamp", "webhook-signature"].map(|h| received.header(h)))
        .stdin(std::process::Stdio::piped())
        // Why a signature fails is the answer, not test output.
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&received.body)
        .unwrap();
    child.wait_with_output().unwrap().status.success()
}

#[tokio::test]
async fn deliveries_to_a_signing_upstream_verify_with_the_reference_library() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + &upstream_toml(
            "signed",
            &upstream.url("/in"),
            &format!("sign = {{ secrets = [\"{WHSEC}\"] }}"),
        )
        + &pulse_route("[\"signed\"]");
    let gw = Running::start(&toml).await;
    let body = fixture("success-pro.json");
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let answer = gw.site.client().post(&url, &[], &body).await;
    assert_eq!(answer.status, 202);
    let id = answer.json()["id"].as_str().unwrap().to_owned();

    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 1).await);
    let received = &upstream.accepted()[0];
    assert_eq!(
        received.header("webhook-id"),
        id,
        "the message id is the event id"
    );
    assert!(
        reference_verifies(WHSEC, received),
        "the reference library accepts it"
    );
    assert!(
        !reference_verifies(OTHER_WHSEC, received),
        "and refuses it under another secret"
    );
}

#[tokio::test]
async fn readiness_fails_while_the_store_cannot_commit_and_recovers_by_itself() {
    let (_upstream, gw) = gateway_with(&pulse_route("[\"sink\"]")).await;
    let admin = gw.gateway.admin_addr().unwrap();
    assert!(
        plain_get(admin, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );

    let lock = rusqlite::Connection::open(gw.site.db_path()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let answer = plain_get(admin, "/readyz").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("not ready"), "{answer}");
    assert!(
        plain_get(admin, "/healthz")
            .await
            .starts_with("HTTP/1.1 200"),
        "alive all the same"
    );
    lock.execute_batch("ROLLBACK").unwrap();

    assert!(
        plain_get(admin, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn an_upstream_gets_the_senders_event_headers_it_asks_for_but_never_a_credential() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let forward = "forward_headers = [\"X-GitHub-Event\", \"X-GitHub-Delivery\"]";
    let toml = server_toml("")
        + &upstream_toml("sink", &upstream.url("/sink"), forward)
        + &route("github", "{ scheme = \"github\", secrets = [\"s\"] }", "");
    let gw = Running::start(&toml).await;
    let body = fixture("success.json");
    let sig = format!("sha256={}", hmac_hex(b"s", &body));
    let headers = [
        ("x-hub-signature-256", sig.as_str()),
        ("x-github-event", "pull_request"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-github-hook-id", "292430182"),
    ];
    let answer = gw
        .site
        .client()
        .post(&gw.url("/hooks/github"), &headers, &body)
        .await;
    assert_eq!(answer.status, 202);

    assert!(eventually(Duration::from_secs(5), || upstream.accepted().len() == 1).await);
    let received = &upstream.accepted()[0];
    assert_eq!(received.header("x-github-event"), "pull_request");
    assert_eq!(
        received.header("x-github-delivery"),
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    // Only what was asked for, and never the signature.
    assert_eq!(received.header("x-github-hook-id"), "");
    assert_eq!(received.header("x-hub-signature-256"), "");
    assert_eq!(received.body, body);
}

#[test]
fn forwarding_a_credential_header_is_a_configuration_error() {
    let toml = |forward: &str, verify: &str| {
        server_toml("")
            + &upstream_toml(
                "sink",
                "http://127.0.0.1:9/",
                &format!("forward_headers = [{forward}]"),
            )
            + &route("r", verify, "")
    };
    let github = "{ scheme = \"github\", secrets = [\"s\"] }";
    let error = Site::new(&toml("\"X-Hub-Signature-256\"", github)).config_error();
    assert!(
        error.contains("upstreams.sink.forward_headers") && error.contains("credential"),
        "{error}"
    );

    // A route's own credential header, whatever its name, is refused too.
    let custom = "{ scheme = \"token\", header = \"X-Pulse-Key\", secrets = [\"t\"] }";
    let error = Site::new(&toml("\"X-Pulse-Key\"", custom)).config_error();
    assert!(
        error.contains("routes[0].upstreams[0]") && error.contains("x-pulse-key"),
        "{error}"
    );
}

#[test]
fn keying_dedup_on_a_credential_header_is_a_configuration_error() {
    let toml = |verify: &str, key: &str| {
        server_toml("")
            + &upstream_toml("sink", "http://127.0.0.1:9/", "")
            + &route(
                "r",
                verify,
                &format!("dedup = {{ key = \"header:{key}\" }}"),
            )
    };
    let custom = "{ scheme = \"token\", header = \"X-Pulse-Key\", secrets = [\"t\"] }";
    for key in ["X-Pulse-Key", "X-Api-Key", "Authorization"] {
        let error = Site::new(&toml(custom, key)).config_error();
        assert!(
            error.contains("routes[0].dedup.key") && error.contains("credential"),
            "{key}: {error}"
        );
    }
    // An ordinary header is a key: this loads.
    Site::new(&toml(custom, "X-Request-Id")).config();
}
