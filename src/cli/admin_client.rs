//! A client for the gateway's admin API, for the `deliveries` commands: it finds the
//! listener and token in the configuration and turns error answers into messages.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::config::Config;

/// Where the admin API is and how to be let in.
#[derive(Debug)]
pub(super) struct AdminClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// The configured gateway's admin API, or the one at `url` when given.
    pub(super) fn new(config: &Config, url: Option<&str>) -> Result<AdminClient, String> {
        let admin = config.admin.as_ref().ok_or_else(|| {
            format!(
                "{} has no [admin] table: the gateway serves no admin API",
                config.source.display()
            )
        })?;
        let base = match url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", reachable(admin.listen)),
        };
        config.require("admin.token")?;
        let token = match &admin.token {
            Some(secret) => Some(
                secret
                    .expose_str()
                    .ok_or("admin.token is not text, so it cannot be sent as a bearer token")?
                    .to_owned(),
            ),
            None => None,
        };
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(AdminClient {
            base,
            token,
            client,
        })
    }

    /// GETs `path` and reads the JSON answer.
    pub(super) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.call(Method::GET, path).await
    }

    /// POSTs to `path` and reads the JSON answer.
    pub(super) async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        self.call(Method::POST, path).await
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, String> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("{url}: {e}"))?;
        let response = self.client.request(request).await.map_err(|e| {
            format!(
                "cannot reach the admin API at {}: {} (is the gateway running?)",
                self.base,
                causes(&e)
            )
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("admin API: reading the answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(refusal(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| format!("admin API: unexpected answer: {e}"))
    }
}

/// The admin API's error answer as one line.
fn refusal(status: http::StatusCode, body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("error")))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    format!("admin API answered {status}: {message}")
}

/// An error with its causes; the outermost of a client error says little.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// An address to connect to: a wildcard listen address is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    SocketAddr::new(ip, listen.port())
}

/// `path` with the non-empty `params` as a query string.
pub(super) fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        assert_eq!(reachable(any).to_string(), "127.0.0.1:9090");
        let set: SocketAddr = "10.0.0.5:9090".parse().unwrap();
        assert_eq!(reachable(set), set);
    }

    #[test]
    fn queries_leave_out_absent_values_and_errors_read_as_text() {
        let path = with_query("/api/x", &[("state", Some("dead")), ("route", None)]);
        assert_eq!(path, "/api/x?state=dead");
        let body = br#"{"error":"not_found","message":"no delivery 9"}"#;
        let shown = refusal(http::StatusCode::NOT_FOUND, body);
        assert_eq!(shown, "admin API answered 404 Not Found: no delivery 9");
    }
}
