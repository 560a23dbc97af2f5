//! `hookgate demo`: the shipped configuration, two sample upstreams, and sample Pulse
//! webhooks, all on loopback, with a report of what each upstream received.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::CliResult;
use super::send::signed_url;
use super::upstream::{Behaviour, Received, SampleUpstream};
use crate::config::Config;
use crate::gateway::Gateway;

/// The shipped configuration, as committed next to this crate.
const SHIPPED: &str = include_str!("../../gateway.toml");

/// The samples sent, in order; one is sent twice.
const SAMPLES: [(&str, &[u8]); 6] = [
    (
        "success.json",
        include_bytes!("../../fixtures/pulse/success.json"),
    ),
    (
        "failed.json",
        include_bytes!("../../fixtures/pulse/failed.json"),
    ),
    (
        "success-pro.json",
        include_bytes!("../../fixtures/pulse/success-pro.json"),
    ),
    (
        "success.json (again)",
        include_bytes!("../../fixtures/pulse/success.json"),
    ),
    (
        "failed-error.json",
        include_bytes!("../../fixtures/pulse/failed-error.json"),
    ),
    (
        "success-extra-nested.json",
        include_bytes!("../../fixtures/pulse/success-extra-nested.json"),
    ),
];

/// How long the demo waits for every delivery.
const PATIENCE: Duration = Duration::from_secs(30);

pub(super) async fn demo() -> CliResult {
    let dir = tempfile::Builder::new()
        .prefix("hookgate-demo-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?;
    let transcripts = start_upstream(Behaviour::Accept).await?;
    let alerts = start_upstream(Behaviour::FailFirst(2)).await?;

    let text = demo_config(&transcripts.url("/transcripts"), &alerts.url("/alerts"))?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let config = Config::load(&path).map_err(|e| e.to_string())?;
    let gateway = Gateway::start(&config).await.map_err(|e| e.to_string())?;

    say!();
    say!("hookgate demo: Pulse, a speech-to-text service, posts each finished transcription job");
    say!(
        "to a webhook URL. hookgate verifies the token in that URL, drops duplicates, stores each"
    );
    say!("result, and fans it out: every result to `transcripts`, failed jobs also to `alerts`.");
    say!();
    say!(
        "  gateway      https://{}  (the shipped gateway.toml)",
        gateway.local_addr()
    );
    say!("  data         {}  (removed on exit)", dir.path().display());
    say!(
        "  transcripts  {}  accepts everything",
        transcripts.url("/transcripts")
    );
    say!(
        "  alerts       {}  answers 503 to the first two attempts of each event",
        alerts.url("/alerts")
    );
    say!();
    say!("Sending Pulse results to /hooks/pulse:");
    let result = send_samples(&config, gateway.local_addr().port()).await;
    let report = match result {
        Ok(()) => wait_and_report(&transcripts, &alerts).await,
        Err(e) => Err(e),
    };
    gateway.shutdown().await;
    report
}

async fn start_upstream(behaviour: Behaviour) -> Result<SampleUpstream, String> {
    SampleUpstream::start(behaviour)
        .await
        .map_err(|e| format!("sample upstream: {e}"))
}

/// The shipped file with a free port, the sample upstreams' URLs and a quick first retry.
fn demo_config(transcripts: &str, alerts: &str) -> Result<String, String> {
    let mut table: toml::Table = SHIPPED.parse().map_err(|e| format!("gateway.toml: {e}"))?;
    let set = |table: &mut toml::Table, path: &[&str], value: toml::Value| {
        let mut at = table;
        for key in &path[..path.len() - 1] {
            at = at
                .entry(key.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| format!("gateway.toml: {key} is not a table"))?;
        }
        at.insert(path[path.len() - 1].to_owned(), value);
        Ok::<_, String>(())
    };
    set(&mut table, &["server", "listen"], "127.0.0.1:0".into())?;
    set(&mut table, &["admin", "listen"], "127.0.0.1:0".into())?;
    set(
        &mut table,
        &["upstreams", "transcripts", "url"],
        transcripts.into(),
    )?;
    set(&mut table, &["upstreams", "alerts", "url"], alerts.into())?;
    set(
        &mut table,
        &["upstreams", "alerts", "retry", "initial"],
        "300ms".into(),
    )?;
    toml::to_string(&table).map_err(|e| e.to_string())
}

async fn send_samples(config: &Config, port: u16) -> CliResult {
    let route = config
        .routes
        .iter()
        .find(|r| &*r.name == "pulse")
        .ok_or("the shipped configuration has no pulse route")?;
    let cert = config
        .server
        .tls
        .as_ref()
        .ok_or("the shipped configuration has no TLS")?;
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: {e}", cert.cert.display()))?;
    let client = crate::deliver::build_client_with(roots);

    for (name, body) in SAMPLES {
        let credentials = route
            .verifier
            .sign(body, crate::store::now_ms() as u64 / 1_000);
        let url = signed_url(&format!("https://localhost:{port}"), route, &credentials);
        let mut request = http::Request::post(&url).header("content-type", "application/json");
        for (header, value) in &credentials.headers {
            request = request.header(header, value);
        }
        let request = request
            .body(Full::new(Bytes::from_static(body)))
            .map_err(|e| e.to_string())?;
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        say!(
            "  {name:<28} -> {status} {}",
            String::from_utf8_lossy(&answer.to_bytes())
        );
    }
    Ok(())
}

async fn wait_and_report(transcripts: &SampleUpstream, alerts: &SampleUpstream) -> CliResult {
    let unique: Vec<&[u8]> = SAMPLES
        .iter()
        .filter(|(name, _)| !name.ends_with("(again)"))
        .map(|(_, body)| *body)
        .collect();
    let failed = unique.iter().filter(|b| status_of(b) == "failed").count();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while transcripts.accepted().len() < unique.len() || alerts.accepted().len() < failed {
        if tokio::time::Instant::now() > deadline {
            return Err("not every delivery arrived within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    say!();
    say!("What each upstream received:");
    report("transcripts", transcripts, &unique);
    report("alerts", alerts, &unique);
    say!();
    say!("Every event arrived once per upstream, byte for byte; the duplicate was not forwarded.");
    Ok(())
}

fn report(name: &str, upstream: &SampleUpstream, sent: &[&[u8]]) {
    let all = upstream.received();
    let accepted = upstream.accepted();
    say!("  {name}: {} events", accepted.len());
    for event in &accepted {
        let id = event.header("hookgate-event-id");
        let statuses: Vec<String> = all
            .iter()
            .filter(|r| r.header("hookgate-event-id") == id)
            .map(|r| r.status.as_u16().to_string())
            .collect();
        let identical = sent.contains(&&event.body[..]);
        say!(
            "    request_id {}  status={:<7}  {:>5} bytes  {}  attempt {} ({})",
            json_field(event, "/request_id"),
            status_of(&event.body),
            event.body.len(),
            if identical {
                "identical to what Pulse sent"
            } else {
                "DIFFERS from what was sent"
            },
            event.header("hookgate-attempt"),
            statuses.join(", "),
        );
    }
}

fn json_field(event: &Received, pointer: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(&event.body)
        .ok()
        .and_then(|v| {
            v.pointer(pointer)
                .and_then(|s| s.as_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

fn status_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str().map(str::to_owned)))
        .unwrap_or_default()
}
