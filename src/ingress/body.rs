//! Reads a request body within the route's size cap, the server's body timeout and the
//! budget for bodies in flight.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::answer::Rejection;

/// A body's share of the budget for bodies in flight (`server.max_inflight_body`, counted
/// in KiB), grown with the memory the body's bytes take as they arrive or are inflated,
/// never ahead of them: a request that announces a large body and sends nothing holds
/// nothing, so keeping others out takes sending the bytes. Given back when dropped.
#[derive(Debug)]
pub(super) struct Charge {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl Charge {
    pub(super) fn new(budget: &Arc<Semaphore>) -> Charge {
        Charge {
            budget: budget.clone(),
            held: None,
        }
    }

    /// Grows the charge to cover `bytes`, or answers `503` when the budget is spent.
    pub(super) fn cover(&mut self, bytes: u64) -> Result<(), Rejection> {
        let needed = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let held = self.held.as_ref().map_or(0, |p| p.num_permits() as u32);
        if needed <= held {
            return Ok(());
        }
        let more = self.budget.clone().try_acquire_many_owned(needed - held);
        let more = more.map_err(|_| {
            crate::warn_throttled!("body budget spent: too many bodies in flight");
            Rejection::Unavailable { retry_after: 1 }
        })?;
        match &mut self.held {
            Some(held) => held.merge(more),
            None => self.held = Some(more),
        }
        Ok(())
    }
}

/// Smallest room a body buffer grows to, so that a body of many small pieces is not moved
/// for each of them.
const MIN_GROWTH: usize = 16 << 10;

/// Makes room in `buf` for `needed` bytes in all, at most `cap`: exactly that at first (a
/// body in one piece, the usual case, takes no more), then doubling, so a growing body is
/// moved a few times, not once per piece. The capacity, which is what the memory costs, is
/// charged before it is taken.
pub(super) fn reserve_charged(
    buf: &mut Vec<u8>,
    needed: usize,
    cap: usize,
    charge: &mut Charge,
) -> Result<(), Rejection> {
    if buf.capacity() >= needed {
        return Ok(());
    }
    let target = match buf.capacity() {
        0 => needed,
        room => room.saturating_mul(2).max(MIN_GROWTH).min(cap).max(needed),
    };
    charge.cover(target as u64)?;
    buf.reserve_exact(target - buf.len());
    Ok(())
}

/// Reads the rest of `body`, refusing it as soon as it passes `limit` bytes (chunked bodies
/// included) or takes longer than `timeout`, with the memory it takes charged to `charge`
/// as it arrives. The body is borrowed, so that after a refusal what is left of it can
/// still be read and dropped.
pub(super) async fn read_capped(
    body: &mut hyper::body::Incoming,
    limit: u64,
    timeout: Duration,
    charge: &mut Charge,
) -> Result<Bytes, Rejection> {
    tokio::time::timeout(timeout, read_charged(body, limit, charge))
        .await
        .unwrap_or(Err(Rejection::Timeout))
}

/// Each piece is copied into one buffer of the gateway's own as it arrives. A piece the
/// HTTP layer hands over is a slice of its read buffer, and keeping the slice would keep
/// that whole buffer: a sender of one-byte chunks, each behind a long size line, would
/// hold kilobytes for every byte charged.
async fn read_charged(
    body: &mut hyper::body::Incoming,
    limit: u64,
    charge: &mut Charge,
) -> Result<Bytes, Rejection> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut whole: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            tracing::debug!(%error, "request body could not be read");
            Rejection::BadBody
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let needed = whole.len() + data.len();
        if needed > cap {
            return Err(Rejection::TooLarge { limit });
        }
        reserve_charged(&mut whole, needed, cap, charge)?;
        whole.extend_from_slice(&data);
    }
    Ok(Bytes::from(whole))
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

/// The declared `Content-Length`, when present and valid.
pub(super) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
