//! Reads a request body within the route's size cap, the server's body timeout and the
//! budget for bodies in flight.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::answer::Rejection;

/// Reads the whole body, refusing it as soon as it passes `limit` bytes (chunked bodies
/// included) or takes longer than `timeout`; returns it with its charge to `budget`, to be
/// held for as long as the body is.
///
/// Its bytes are charged to `budget` (in KiB) as they arrive, not as declared: a request
/// that announces a large body and sends nothing holds a single KiB, so a sender must
/// actually send the bytes that keep others out. When the budget runs out mid-body the
/// answer is `503`.
pub(super) async fn read_capped(
    body: hyper::body::Incoming,
    limit: u64,
    timeout: Duration,
    budget: &Arc<Semaphore>,
) -> Result<(Bytes, OwnedSemaphorePermit), Rejection> {
    let mut charge = take(budget, 1)?;
    match tokio::time::timeout(timeout, read_charged(body, limit, budget, &mut charge)).await {
        Err(_) => Err(Rejection::Timeout),
        Ok(result) => result.map(|bytes| (bytes, charge)),
    }
}

async fn read_charged(
    mut body: hyper::body::Incoming,
    limit: u64,
    budget: &Arc<Semaphore>,
    charge: &mut OwnedSemaphorePermit,
) -> Result<Bytes, Rejection> {
    let mut frames: Vec<Bytes> = Vec::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            tracing::debug!(%error, "request body could not be read");
            Rejection::BadBody
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len() as u64;
        if total > limit {
            return Err(Rejection::TooLarge { limit });
        }
        let owed = kib(total).saturating_sub(charge.num_permits() as u32);
        if owed > 0 {
            charge.merge(take(budget, owed)?);
        }
        frames.push(data);
    }
    Ok(match frames.len() {
        0 => Bytes::new(),
        1 => frames.swap_remove(0),
        _ => {
            let mut whole = BytesMut::with_capacity(total as usize);
            frames
                .iter()
                .for_each(|frame| whole.extend_from_slice(frame));
            whole.freeze()
        }
    })
}

/// Reads and throws away the rest of a refused request's body in a task of its own, up to
/// `limit` bytes and for at most `timeout`, so that its sender reads the answer already
/// written. Past either, the body is dropped and the connection closed.
pub(super) fn discard(body: hyper::body::Incoming, limit: u64, timeout: Duration) {
    if body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let mut seen: u64 = 0;
        let read = async {
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |data| data.len() as u64);
                if seen > limit {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, read).await;
    });
}

/// `bytes` in whole KiB, at least one.
pub(super) fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}

/// `kib` KiB from the budget for bodies in flight, or `503`.
pub(super) fn take(budget: &Arc<Semaphore>, kib: u32) -> Result<OwnedSemaphorePermit, Rejection> {
    budget.clone().try_acquire_many_owned(kib).map_err(|_| {
        tracing::warn!("body budget spent: too many bodies in flight");
        Rejection::Unavailable { retry_after: 1 }
    })
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
