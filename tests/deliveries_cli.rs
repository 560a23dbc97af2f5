//! `hookgate deliveries` as an operator runs it: the real binary against a running gateway,
//! finding the admin listener and token in the same configuration file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use http::StatusCode;
use support::admin::*;
use support::*;

/// Runs the binary off the runtime's threads, so the in-process gateway keeps serving.
async fn hookgate(config: &Path, args: &[&str]) -> Output {
    let config = config.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_command(&config, &args)
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A gateway whose admin listener took a free port; the file then names that port, so the
/// command line finds the admin listener the way an operator's would.
async fn started(toml: &str) -> Running {
    let gw = Running::start(toml).await;
    let admin = gw.gateway.admin_addr().unwrap();
    let text = std::fs::read_to_string(&gw.site.config_path).unwrap();
    let pinned = text.replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"{admin}\""),
    );
    assert_ne!(text, pinned, "the admin listen line was not found");
    std::fs::write(&gw.site.config_path, pinned).unwrap();
    gw
}

#[tokio::test]
async fn list_show_and_retry_work_against_a_running_gateway() {
    let flaky = SampleUpstream::start(Behaviour::FailFirst(1))
        .await
        .unwrap();
    let upstream =
        upstream_toml("flaky", &flaky.url("/"), "").replace("max_attempts = 5", "max_attempts = 1");
    let toml =
        server_toml("") + &admin_toml("127.0.0.1:0") + &upstream + &pulse_route("[\"flaky\"]");
    let gw = started(&toml).await;
    let url = gw.url(&format!("/hooks/pulse?token={TOKEN}"));
    let mut events = Vec::new();
    for n in 0..3 {
        let body = format!("{{\"request_id\":\"cli-{n}\",\"status\":\"failed\"}}");
        let answer = gw.site.client().post(&url, &[], body.as_bytes()).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        events.push(answer.json()["id"].as_str().unwrap().to_owned());
    }
    let admin = gw.gateway.admin_addr().unwrap();
    let dead = admin_until(admin, "/api/deliveries?state=dead", |v| {
        len(v, "deliveries") == 3
    })
    .await;
    let first = dead["deliveries"][2]["id"].as_i64().unwrap().to_string();
    let config = &gw.site.config_path;

    let listed = hookgate(config, &["deliveries", "list", "--state", "dead"]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let table = stdout(&listed);
    assert!(table.starts_with("ID"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains("dead")).count(),
        3,
        "{table}"
    );
    assert!(table.contains("flaky") && table.contains("503"), "{table}");

    let shown = hookgate(config, &["deliveries", "show", &first]).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    assert!(
        text.contains(&events[0]) && text.contains("status 503"),
        "{text}"
    );

    let one = hookgate(config, &["deliveries", "retry", &first]).await;
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(stdout(&one).contains("replayed"), "{}", stdout(&one));
    assert!(eventually(Duration::from_secs(5), || flaky.accepted().len() == 1).await);

    let all = hookgate(
        config,
        &["deliveries", "retry", "--all", "--upstream", "flaky"],
    )
    .await;
    assert!(all.status.success(), "{}", stderr(&all));
    assert!(stdout(&all).contains("replayed 2"), "{}", stdout(&all));
    assert!(eventually(Duration::from_secs(5), || flaky.accepted().len() == 3).await);
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn errors_exit_non_zero_with_a_clear_message() {
    let sink = SampleUpstream::start(Behaviour::Accept).await.unwrap();
    let upstream = upstream_toml("sink", &sink.url("/"), "");
    let toml =
        server_toml("") + &admin_toml("127.0.0.1:0") + &upstream + &pulse_route("[\"sink\"]");
    let gw = started(&toml).await;
    let config = &gw.site.config_path;

    let unknown = hookgate(config, &["deliveries", "retry", "424242"]).await;
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no delivery 424242"),
        "{}",
        stderr(&unknown)
    );
    let bad_state = hookgate(config, &["deliveries", "list", "--state", "lost"]).await;
    assert!(!bad_state.status.success());
    assert!(
        stderr(&bad_state).contains("lost"),
        "{}",
        stderr(&bad_state)
    );
    gw.gateway.shutdown().await;

    let down = hookgate(config, &["deliveries", "list"]).await;
    assert!(!down.status.success());
    assert!(
        stderr(&down).contains("is the gateway running?"),
        "{}",
        stderr(&down)
    );

    let no_admin = Site::new(&(server_toml("") + &upstream + &pulse_route("[\"sink\"]")));
    let refused = hookgate(&no_admin.config_path, &["deliveries", "list"]).await;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("[admin]"), "{}", stderr(&refused));
}
