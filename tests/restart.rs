//! The real binary: pending deliveries survive `kill -9` and complete after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// A gateway process, killed with `SIGKILL` when dropped, so a failing test leaves none behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hookgate run` on a site; returns the process and the port it listens on.
fn spawn_gateway(site: &Site) -> (Process, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["run", "-c"])
        .arg(&site.config_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("hookgate starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line
                .split("listen=https://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse::<u16>().ok())
            {
                let _ = tx.send(port);
            }
        }
    });
    let child = Process(child);
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("gateway announces its port");
    (child, port)
}

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
    let (gateway, gw_port) = spawn_gateway(&site);
    let client = site.client();
    let url = format!("https://localhost:{gw_port}/hooks/pulse?token={TOKEN}");

    let mut sent = Vec::new();
    for i in 0..20 {
        let body = format!("{{\"status\":\"success\",\"request_id\":\"job-{i}\"}}").into_bytes();
        let answer = client
            .post(&url, &[("content-type", "application/json")], &body)
            .await;
        assert_eq!(answer.status, 202);
        sent.push(body);
    }
    drop(gateway); // SIGKILL, mid-flight for the scheduler

    let upstream = SampleUpstream::start_on(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Behaviour::Accept,
    )
    .await
    .expect("upstream takes the port");
    let (gateway, _) = spawn_gateway(&site);
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
