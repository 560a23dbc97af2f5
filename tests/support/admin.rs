//! A plain HTTP client for the admin API, and a gateway configuration with an admin
//! listener behind a token.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Answer;

/// The admin token the test configurations use.
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// `[admin]` on `listen`, behind [`ADMIN_TOKEN`].
pub fn admin_toml(listen: &str) -> String {
    format!("[admin]\nlisten = \"{listen}\"\ntoken = \"{ADMIN_TOKEN}\"\n")
}

/// A request to the admin listener at `addr`, with `token` as bearer token when given.
pub async fn admin_call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    let response = client.request(request).await.expect("admin answers");
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// [`admin_call`] with [`ADMIN_TOKEN`], expecting `200`; the JSON answer.
pub async fn admin_ok(addr: SocketAddr, method: &str, path: &str) -> serde_json::Value {
    let answer = admin_call(addr, method, path, Some(ADMIN_TOKEN)).await;
    assert_eq!(answer.status, 200, "{method} {path}: {:?}", answer.body);
    answer.json()
}

/// Polls `GET path` until `done` holds for its JSON answer, for up to ten seconds.
pub async fn admin_until(
    addr: SocketAddr,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = admin_ok(addr, "GET", path).await;
        if done(&answer) || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// How many items the list under `key` holds.
pub fn len(value: &serde_json::Value, key: &str) -> usize {
    value[key].as_array().map_or(0, Vec::len)
}
