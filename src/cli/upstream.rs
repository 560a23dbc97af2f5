//! A sample upstream on loopback that records what it receives, for the demo and tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// The status the upstream answered.
    pub status: StatusCode,
}

impl Received {
    /// A header's value as text, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// How the upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// `200` to everything.
    Accept,
    /// `503` to the first `n` attempts of each event (by `Hookgate-Event-Id`), then `200`.
    FailFirst(u32),
    /// This status to everything.
    Always(StatusCode),
    /// `200`, but only after this long.
    Slow(std::time::Duration),
}

/// A running sample upstream; stops when dropped.
#[derive(Debug)]
pub struct SampleUpstream {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl SampleUpstream {
    /// Starts on `127.0.0.1` at a free port.
    pub async fn start(behaviour: Behaviour) -> std::io::Result<SampleUpstream> {
        let loopback = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
        Self::start_on(loopback, behaviour).await
    }

    /// Starts on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        behaviour: Behaviour,
    ) -> std::io::Result<SampleUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            behaviour,
            received: received.clone(),
            seen: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(accept_loop(listener, state));
        Ok(SampleUpstream {
            addr,
            received,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The requests it answered `2xx`.
    pub fn accepted(&self) -> Vec<Received> {
        let mut all = self.received();
        all.retain(|r| r.status.is_success());
        all
    }
}

impl Drop for SampleUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    behaviour: Behaviour,
    received: Arc<Mutex<Vec<Received>>>,
    seen: Mutex<HashMap<String, u32>>,
}

impl State {
    fn answer(&self, headers: &HeaderMap) -> StatusCode {
        match self.behaviour {
            Behaviour::Accept | Behaviour::Slow(_) => StatusCode::OK,
            Behaviour::Always(status) => status,
            Behaviour::FailFirst(n) => {
                let id = headers
                    .get("hookgate-event-id")
                    .and_then(|v| v.to_str().ok());
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                let count = seen.entry(id.unwrap_or("").to_owned()).or_default();
                *count += 1;
                if *count <= n {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    while let Ok((stream, _)) = listener.accept().await {
        let state = state.clone();
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let state = state.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                if let Behaviour::Slow(delay) = state.behaviour {
                    tokio::time::sleep(delay).await;
                }
                let status = state.answer(&parts.headers);
                if let Ok(mut received) = state.received.lock() {
                    received.push(Received {
                        headers: parts.headers,
                        body,
                        status,
                    });
                }
                let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                *response.status_mut() = status;
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
