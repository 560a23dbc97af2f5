//! The real binary: pending deliveries survive `kill -9` and complete after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// A loopback port that nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn pending_deliveries_survive_kill_9_and_complete_after_restart() {
    let port = free_port();
    let down_url = format!("http://127.0.0.1:{port}/in");
    let toml =
        server_toml("") + &upstream_toml("later", &down_url, "") + &pulse_route(r#"["later"]"#);
    let site = Site::new(&toml);
    let (gateway, gw_port) = run_logged_at(&site, "info");
    let client = site.client();
    let url = format!("https://localhost:{gw_port}/hooks/pulse?token={TOKEN}");

    let mut sent = Vec::new();
    for i in 0..20 {
        // Every fifth a long transcript, whose body the store keeps in a file of its own.
        let text = if i % 5 == 0 {
            "word ".repeat(40_000)
        } else {
            String::new()
        };
        let body =
            format!("{{\"status\":\"success\",\"request_id\":\"job-{i}\",\"text\":\"{text}\"}}")
                .into_bytes();
        let answer = client
            .post(&url, &[("content-type", "application/json")], &body)
            .await;
        assert_eq!(answer.status, 202);
        sent.push(body);
    }
    drop(gateway); // SIGKILL, mid-flight for the scheduler
    let folder = format!("{}-bodies", site.db_path().display());
    let files = std::fs::read_dir(&folder).unwrap().count();
    assert_eq!(files, 4, "each long body is in a file of its own");

    let upstream = SampleUpstream::start_on(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Behaviour::Accept,
    )
    .await
    .expect("upstream takes the port");
    let (gateway, _) = run_logged_at(&site, "info");
    let all = eventually(Duration::from_secs(30), || {
        upstream.accepted().len() >= sent.len()
    })
    .await;
    drop(gateway);
    assert!(
        all,
        "only {} of {} arrived",
        upstream.accepted().len(),
        sent.len()
    );

    let mut got: Vec<Vec<u8>> = upstream
        .accepted()
        .iter()
        .map(|r| r.body.to_vec())
        .collect();
    got.sort();
    got.dedup();
    sent.sort();
    assert_eq!(got, sent, "every acknowledged event arrived, byte for byte");
}

/// Sends `count` events from `senders` concurrent senders until done or the gateway dies;
/// returns the request ids that were acknowledged `2xx`, with the event id of each.
async fn load(site: &Site, port: u16, senders: usize, count: usize) -> Vec<(String, String)> {
    let client = std::sync::Arc::new(site.client());
    let url = format!("https://localhost:{port}/hooks/pulse?token={TOKEN}");
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in (sender..count).step_by(senders) {
                let request_id = format!("crash-{i}");
                let body = format!("{{\"status\":\"success\",\"request_id\":\"{request_id}\"}}");
                match client.try_post(&url, body.as_bytes()).await {
                    Some(answer) if answer.status.is_success() => {
                        let id = answer.json()["id"].as_str().unwrap().to_owned();
                        acked.push((request_id, id));
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked
}

#[tokio::test]
async fn every_event_acknowledged_before_a_kill_9_mid_load_reaches_every_upstream() {
    let down_port = free_port();
    let live = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let toml = server_toml("")
        + &upstream_toml("live", &live.url("/live"), "")
        + &upstream_toml("down", &format!("http://127.0.0.1:{down_port}/down"), "")
            .replace("max_attempts = 5", "max_attempts = 10000, max_age = \"1h\"")
        + &pulse_route(r#"["live", "down"]"#);
    let site = Site::new(&toml);
    let (gateway, port) = run_logged_at(&site, "info");

    // Kill at a random moment while 3000 events are being sent by 16 senders.
    let loading = load(&site, port, 16, 3_000);
    let kill_after = Duration::from_millis(300 + rand::random::<u64>() % 1_200);
    let killer = async {
        tokio::time::sleep(kill_after).await;
        drop(gateway);
    };
    let (acked, ()) = tokio::join!(loading, killer);
    assert!(
        !acked.is_empty(),
        "nothing was acknowledged before the kill"
    );
    eprintln!(
        "{} acknowledged before a kill after {kill_after:?}",
        acked.len()
    );

    let down = SampleUpstream::start_on(
        format!("127.0.0.1:{down_port}").parse().unwrap(),
        Behaviour::Accept,
    )
    .await
    .unwrap();
    let (_gateway, _) = run_logged_at(&site, "info");
    let ids_of = |upstream: &SampleUpstream| -> std::collections::HashMap<String, std::collections::HashSet<String>> {
        let mut seen: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
        for r in upstream.accepted() {
            let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let request_id = json["request_id"].as_str().unwrap().to_owned();
            seen.entry(request_id).or_default().insert(r.header("hookgate-event-id").to_owned());
        }
        seen
    };
    let arrived = eventually(Duration::from_secs(60), || {
        let (at_live, at_down) = (ids_of(&live), ids_of(&down));
        acked
            .iter()
            .all(|(r, _)| at_live.contains_key(r) && at_down.contains_key(r))
    })
    .await;
    let (at_live, at_down) = (ids_of(&live), ids_of(&down));
    let missing = acked
        .iter()
        .filter(|(r, _)| !at_down.contains_key(r) || !at_live.contains_key(r))
        .count();
    assert!(
        arrived,
        "{missing} of {} acknowledged events never arrived (kill after {kill_after:?})",
        acked.len()
    );
    for (request_id, event_id) in &acked {
        for seen in [&at_live, &at_down] {
            let ids = &seen[request_id];
            assert_eq!(ids.len(), 1, "{request_id}: repeats carry one event id");
            assert!(
                ids.contains(event_id),
                "{request_id}: delivered as the acknowledged event"
            );
        }
    }
    let half_stored = count(
        &site.db_path(),
        "SELECT COUNT(*) FROM events e WHERE (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id) != 2",
    );
    assert_eq!(half_stored, 0, "every stored event has both its deliveries");
}

#[tokio::test]
async fn sigterm_lets_an_attempt_under_way_finish_then_exits_cleanly() {
    let slow = SampleUpstream::start(Behaviour::Slow(Duration::from_secs(1)))
        .await
        .unwrap();
    let toml =
        server_toml("") + &upstream_toml("slow", &slow.url("/"), "") + &pulse_route(r#"["slow"]"#);
    let site = Site::new(&toml);
    let (mut gateway, port) = run_logged_at(&site, "info");
    let url = format!("https://localhost:{port}/hooks/pulse?token={TOKEN}");
    let answer = site
        .client()
        .post(&url, &[], br#"{"request_id":"term"}"#)
        .await;
    assert_eq!(answer.status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = gateway.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exited = eventually(Duration::from_secs(15), || {
        matches!(gateway.child.try_wait(), Ok(Some(_)))
    })
    .await;
    assert!(exited, "the gateway did not exit after SIGTERM");
    assert!(gateway.child.try_wait().unwrap().unwrap().success());
    assert_eq!(slow.accepted().len(), 1);
    let delivered = count(
        &site.db_path(),
        "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'",
    );
    assert_eq!(
        delivered, 1,
        "the attempt under way was finished and recorded"
    );
}
