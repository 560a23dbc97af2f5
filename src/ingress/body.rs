//! Reads a request body within the route's size cap, the server's body timeout and the
//! budget for bodies in flight.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::answer::Rejection;
use crate::telemetry::throttle::Throttle;

/// A body's share of the budget for bodies in flight (`server.max_inflight_body`, counted
/// in KiB), grown as the body's bytes arrive or are inflated, never ahead of them: a
/// request that announces a large body and sends nothing holds nothing, so keeping others
/// out takes sending the bytes. Given back when dropped.
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
            static SPENT: Throttle = Throttle::new();
            if let Some(left_out) = SPENT.pass() {
                tracing::warn!(left_out, "body budget spent: too many bodies in flight");
            }
            Rejection::Unavailable { retry_after: 1 }
        })?;
        match &mut self.held {
            Some(held) => held.merge(more),
            None => self.held = Some(more),
        }
        Ok(())
    }
}

/// Reads the rest of `body`, refusing it as soon as it passes `limit` bytes (chunked bodies
/// included) or takes longer than `timeout`, with its bytes charged to `charge` as they
/// arrive. The body is borrowed, so that after a refusal what is left of it can still be
/// read and dropped.
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

async fn read_charged(
    body: &mut hyper::body::Incoming,
    limit: u64,
    charge: &mut Charge,
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
        charge.cover(total)?;
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

/// The declared `Content-Length`, when present and valid.
pub(super) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
