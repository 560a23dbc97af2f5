//! A flood of unsigned and badly signed requests from many addresses, through the real
//! binary, while a genuine sender keeps posting: every genuine event gets in and is
//! delivered, and the gateway's memory stays under a stated bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::*;
use tokio::time::Instant;

/// Addresses the flood comes from: 127.0.2.1 to 127.0.2.200.
const FLOOD_ADDRESSES: u8 = 200;
/// Flooding tasks at once, each cycling through its share of the addresses.
const FLOODERS: usize = 40;
/// How long the flood lasts.
const FLOOD_FOR: Duration = Duration::from_secs(8);
/// Genuine events, posted one every [`GENUINE_EVERY`] while the flood runs.
const GENUINE: usize = 60;
const GENUINE_EVERY: Duration = Duration::from_millis(100);
/// The bound on the gateway's peak resident memory under the flood, for a debug build
/// (measured here: 23 MiB idle, 32 MiB peak, for about 9 000 bad requests).
const PEAK_RSS_BOUND_KIB: u64 = 64 * 1024;

/// The gateway process's peak resident memory so far, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One flooding task: bad requests from its addresses, as fast as they are answered.
async fn flood(
    cert: std::path::PathBuf,
    port: u16,
    first: u8,
    stop: Instant,
    sent: Arc<AtomicU64>,
) {
    let step = usize::from(FLOOD_ADDRESSES).div_ceil(FLOODERS);
    let clients: Vec<TestClient> = (0..step)
        .map(|i| first as usize + i * FLOODERS)
        .filter(|n| *n >= 1 && *n <= usize::from(FLOOD_ADDRESSES))
        .map(|n| {
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 2, n as u8));
            TestClient::bound_to(&cert, from)
        })
        .collect();
    let base = format!("https://localhost:{port}/hooks/pulse");
    let big = vec![b'x'; 256 * 1024];
    let mut n = 0usize;
    while Instant::now() < stop {
        let client = &clients[n % clients.len()];
        let body = format!("{{\"request_id\":\"flood-{first}-{n}\"}}");
        let _ = match n % 4 {
            0 => client.try_post(&base, body.as_bytes()).await,
            1 => {
                let url = format!("{base}?token=not-the-token-{n}");
                client.try_post(&url, body.as_bytes()).await
            }
            2 => {
                let url = format!("{base}?token=not-the-token");
                client.try_post(&url, &big).await
            }
            _ => client.try_post(&format!("{base}/{n}"), b"{}").await,
        };
        sent.fetch_add(1, Ordering::Relaxed);
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_sender_keeps_getting_through_a_flood_from_many_addresses() {
    let upstream = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("client_rate = \"20/s\"")
        + &upstream_toml("u", &upstream.url("/in"), "")
        + &pulse_route("[\"u\"]");
    let site = Site::new(&toml);
    let (gateway, port) = run_logged_at(&site, "info");
    let pid = gateway.child.id();
    let idle_kib = peak_rss_kib(pid);

    let stop = Instant::now() + FLOOD_FOR;
    let sent = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (1..=FLOODERS as u8)
        .map(|first| {
            let sent = sent.clone();
            tokio::spawn(flood(site.cert_path(), port, first, stop, sent))
        })
        .collect();

    // The genuine sender: one Pulse result every 100 ms, each retried on a 5xx after the
    // Retry-After the gateway gives, up to 10 times, as Pulse does.
    let genuine = site.client();
    let url = format!("https://localhost:{port}/hooks/pulse?token={TOKEN}");
    let template = String::from_utf8(fixture("success.json")).unwrap();
    let mut retried = 0;
    let mut expected = BTreeSet::new();
    for i in 0..GENUINE {
        let started = Instant::now();
        let id = format!("genuine-{i:03}");
        let body = template.replace("6f1c2a9e-4b7d-4e1a-9c3f-2d8b5e7a1c40", &id);
        let mut accepted = false;
        for _ in 0..10 {
            let answer = genuine.post(&url, &[], body.as_bytes()).await;
            if answer.status == 202 || answer.status == 200 {
                accepted = true;
                break;
            }
            assert!(
                answer.status.is_server_error(),
                "{} for {id}",
                answer.status
            );
            retried += 1;
            let wait: u64 = answer.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        assert!(accepted, "{id} was never accepted");
        expected.insert(id);
        tokio::time::sleep(GENUINE_EVERY.saturating_sub(started.elapsed())).await;
    }
    for flooder in flooders {
        flooder.await.unwrap();
    }
    let flood_requests = sent.load(Ordering::Relaxed);

    assert!(
        eventually(Duration::from_secs(30), || upstream.accepted().len()
            >= GENUINE)
        .await,
        "{} of {GENUINE} delivered",
        upstream.accepted().len()
    );
    let delivered: BTreeSet<String> = upstream
        .accepted()
        .iter()
        .map(|r| {
            let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            json["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(delivered, expected);
    assert_eq!(
        upstream.accepted().len(),
        GENUINE,
        "an event was delivered twice"
    );
    assert_eq!(
        count(&site.db_path(), "SELECT count(*) FROM events"),
        GENUINE as i64
    );

    let peak_kib = peak_rss_kib(pid);
    eprintln!(
        "flood: {flood_requests} bad requests from {FLOOD_ADDRESSES} addresses in {FLOOD_FOR:?}; \
         genuine retries {retried}; RSS idle {idle_kib} KiB, peak {peak_kib} KiB"
    );
    assert!(
        flood_requests > 1_000,
        "the flood was too thin to prove anything"
    );
    assert!(
        peak_kib < PEAK_RSS_BOUND_KIB,
        "peak RSS {peak_kib} KiB is over the bound of {PEAK_RSS_BOUND_KIB} KiB"
    );
}
