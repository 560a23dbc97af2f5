//! Reads a request body within the route's size cap and the server's body timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use super::answer::Rejection;

/// Reads the whole body, refusing it as soon as it passes `limit` bytes (chunked bodies
/// included) or takes longer than `timeout`.
pub(super) async fn read_capped(
    body: hyper::body::Incoming,
    limit: u64,
    timeout: Duration,
) -> Result<Bytes, Rejection> {
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(Rejection::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Rejection::TooLarge { limit })
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "request body could not be read");
            Err(Rejection::BadBody)
        }
    }
}

/// The declared `Content-Length`, when present and valid.
pub(super) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
