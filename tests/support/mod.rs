//! Shared pieces of the end-to-end tests: a gateway started from a TOML text in a
//! throwaway folder, a TLS client that trusts its certificate, and polling helpers.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use hookgate::config::Config;
use hookgate::gateway::Gateway;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub use hookgate::cli::upstream::{Behaviour, SampleUpstream};

pub mod admin;

/// The Pulse samples, as shipped.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/pulse")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The token the test configurations use.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// `[server]` with TLS in the folder, on a free loopback port, plus `extra` lines.
pub fn server_toml(extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"certs/gateway.crt\", key = \"certs/gateway.key\", create = true }}\n{extra}\n"
    )
}

/// A Pulse route keyed on `/request_id`, token in the query, fanned out to `upstreams`.
pub fn pulse_route(upstreams: &str) -> String {
    format!(
        r#"
[[routes]]
name = "pulse"
path = "/hooks/pulse"
verify = {{ scheme = "token", query = "token", secrets = [{{ file = "pulse.token" }}] }}
dedup = {{ key = "json:/request_id", window = "72h" }}
limited_status = 503
upstreams = {upstreams}
"#
    )
}

/// An upstream table with a quick retry schedule.
pub fn upstream_toml(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[upstreams.{name}]\nurl = \"{url}\"\ntimeout = \"2s\"\nretry = {{ initial = \"50ms\", max_delay = \"200ms\", max_attempts = 5 }}\n{extra}\n"
    )
}

/// A folder holding a configuration file, with the gateway's certificate created in it.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Site {
    pub fn new(toml: &str) -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("pulse.token"), TOKEN).expect("write token");
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, toml).expect("write config");
        Site { dir, config_path }
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error the configuration must fail to load with.
    pub fn config_error(&self) -> String {
        match Config::load(&self.config_path) {
            Ok(_) => panic!("the configuration loaded"),
            Err(error) => error.to_string(),
        }
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("certs/gateway.crt")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data/hookgate.db")
    }

    pub fn client(&self) -> TestClient {
        TestClient::new(&self.cert_path(), false)
    }

    pub fn h2_client(&self) -> TestClient {
        TestClient::new(&self.cert_path(), true)
    }
}

/// An in-process gateway on a [`Site`].
pub struct Running {
    pub site: Site,
    pub gateway: Gateway,
}

impl Running {
    pub async fn start(toml: &str) -> Running {
        let site = Site::new(toml);
        let gateway = Gateway::start(&site.config())
            .await
            .expect("gateway starts");
        Running { site, gateway }
    }

    /// A bare TLS stream to the gateway, for writing HTTP by hand.
    pub async fn raw_tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        self.try_raw_tls().await.expect("TLS handshake")
    }

    /// A bare TLS stream, or why the connection or handshake failed.
    pub async fn try_raw_tls(
        &self,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        raw_tls_to(&self.site.cert_path(), self.gateway.local_addr().port()).await
    }

    /// `https://localhost:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "https://localhost:{}{path}",
            self.gateway.local_addr().port()
        )
    }
}

/// An HTTPS client trusting one certificate.
pub struct TestClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

impl TestClient {
    pub fn new(cert: &Path, http2_only: bool) -> TestClient {
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots(cert))
            .with_no_client_auth();
        TestClient::with_tls(tls, http2_only)
    }

    /// A client that presents `chain` (PEM, leaf first) with its private key `key` (PEM).
    pub fn with_identity(cert: &Path, chain: &str, key: &str) -> TestClient {
        let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("client chain parses");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
            .expect("client key parses");
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots(cert))
            .with_client_auth_cert(chain, key)
            .expect("client identity");
        TestClient::with_tls(tls, false)
    }

    /// An HTTP/1.1 client whose connections come from the local address `from` (any of
    /// 127.0.0.0/8 works on loopback), as if from another machine.
    pub fn bound_to(cert: &Path, from: std::net::IpAddr) -> TestClient {
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots(cert))
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_local_address(Some(from));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        TestClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    fn with_tls(tls: rustls::ClientConfig, http2_only: bool) -> TestClient {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let connector = if http2_only {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client = Client::builder(TokioExecutor::new())
            .http2_only(http2_only)
            .build(connector);
        TestClient { client }
    }

    /// A POST that may fail to complete (the gateway was killed): `None` then.
    pub async fn try_post(&self, url: &str, body: &[u8]) -> Option<Answer> {
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let response = self.client.request(request).await.ok()?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        Some(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn post(&self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        self.request("POST", url, headers, body).await
    }

    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let response = self
            .client
            .request(request)
            .await
            .expect("request completes");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("answer body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// A bare TLS stream to a gateway on `127.0.0.1:port` whose certificate is in `cert`.
pub async fn raw_tls_to(
    cert: &Path,
    port: u16,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    raw_tls_from(cert, port, std::net::Ipv4Addr::LOCALHOST).await
}

/// [`raw_tls_to`] from the local address `from` (any of 127.0.0.0/8).
pub async fn raw_tls_from(
    cert: &Path,
    port: u16,
    from: std::net::Ipv4Addr,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots(cert))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, stream).await
}

/// A root store holding the certificates of one PEM file.
fn roots(cert: &Path) -> rustls::RootCertStore {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("certificate file")
        .collect::<Result<_, _>>()
        .expect("certificate parses");
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    roots
}

/// Waits up to `limit` for `done` to hold, polling every 20 ms.
pub async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// Rows in a table of the store, read with a separate connection.
pub fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open store");
    conn.query_row(sql, [], |r| r.get(0)).expect("count query")
}

/// The gateway binary with every log line it writes collected.
pub struct Logged {
    pub child: std::process::Child,
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hookgate run` on a site at `RUST_LOG=trace`; returns the process and its port.
pub fn run_logged(site: &Site) -> (Logged, u16) {
    run_logged_at(site, "trace")
}

/// `hookgate run` on a site at log level `level`; the process is killed when dropped.
pub fn run_logged_at(site: &Site, level: &str) -> (Logged, u16) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["run", "-c"])
        .arg(&site.config_path)
        .env("RUST_LOG", level)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("hookgate starts");
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            // Human lines say `listen=https://127.0.0.1:PORT`, JSON lines `"listen":"https://…"`.
            if line.contains("hookgate started")
                && let Some(rest) = line.split("https://127.0.0.1:").nth(1)
            {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(digits.parse::<u16>());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let logged = Logged { child, lines };
    // `logged` kills the process when this fails.
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the gateway logs its start at info")
        .expect("the started line holds the port");
    (logged, port)
}

impl Logged {
    /// Whether some line holds every one of `parts`.
    pub fn logged(&self, parts: &[&str]) -> bool {
        let lines = self.lines.lock().unwrap();
        lines.iter().any(|l| parts.iter().all(|p| l.contains(p)))
    }
}

/// `hookgate -c CONFIG ARGS...` to completion, logging at `warn`.
pub fn run_command(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("hookgate runs")
}

/// `data` compressed as one gzip stream.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}
