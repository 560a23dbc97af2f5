//! The local upstream for the proxy and hookgate runs: answers `200` to every POST and
//! records, per request, its path, the body's `request_id` and the arrival time.
//!
//! `GET /count` answers how many POSTs arrived; `GET /dump` writes the records to the
//! `--out` file, one line `PATH REQUEST_ID UNIX_NANOS` each, and answers the count.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Args;
use crate::generate::find;

/// Bytes of a body searched for the `request_id`: it comes first in every sample.
const ID_WITHIN: usize = 4096;

#[derive(Default)]
struct Records {
    lines: Vec<u8>,
    count: u64,
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let listen = args.text("listen")?.to_owned();
    let out = args.text("out")?.to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(serve(listen, out))
}

async fn serve(listen: String, out: String) -> Result<(), String> {
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("{listen}: {e}"))?;
    let records = Arc::new(Mutex::new(Records::default()));
    let out = Arc::new(out);
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (records, out) = (records.clone(), out.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, records.clone(), out.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    records: Arc<Mutex<Records>>,
    out: Arc<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let text = match (method, path.as_str()) {
        (Method::GET, "/count") => lock(&records).count.to_string(),
        (Method::GET, "/dump") => dump(&records, &out),
        (Method::POST, _) => {
            let id = body
                .as_ref()
                .ok()
                .and_then(|b| request_id(b))
                .unwrap_or("-");
            let mut records = lock(&records);
            records.count += 1;
            let _ = writeln!(records.lines, "{path} {id} {at}");
            "ok".to_owned()
        }
        _ => "?".to_owned(),
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

fn lock(records: &Mutex<Records>) -> std::sync::MutexGuard<'_, Records> {
    records.lock().unwrap_or_else(|p| p.into_inner())
}

fn dump(records: &Mutex<Records>, out: &str) -> String {
    let records = lock(records);
    match std::fs::write(out, &records.lines) {
        Ok(()) => records.count.to_string(),
        Err(e) => format!("error {out}: {e}"),
    }
}

fn request_id(body: &[u8]) -> Option<&str> {
    const FIELD: &[u8] = b"\"request_id\":\"";
    let head = &body[..body.len().min(ID_WITHIN)];
    let start = find(head, FIELD)? + FIELD.len();
    let len = head[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&head[start..start + len]).ok()
}
