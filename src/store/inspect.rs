//! What an operator reads and changes in the store: events, deliveries and their attempts,
//! replays of dead letters, and paused upstreams.
//!
//! These types are what the admin API answers with, so they serialize to its JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Most rows one listing returns.
pub const MAX_LIMIT: usize = 1_000;
/// Rows a listing returns when no limit is asked for.
pub const DEFAULT_LIMIT: usize = 100;

/// A delivery's state as an operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// The upstream acknowledged it.
    Delivered,
    /// No more attempts: a dead letter.
    Dead,
    /// Pending, but its upstream is paused.
    Paused,
}

impl DeliveryState {
    /// The state's name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Paused => "paused",
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "dead" => Ok(DeliveryState::Dead),
            "paused" => Ok(DeliveryState::Paused),
            other => Err(format!(
                "{other:?} is not a state: pending, delivered, dead or paused"
            )),
        }
    }
}

/// Which events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events of this route.
    pub route: Option<String>,
    /// Only events received at or after this time (milliseconds since the Unix epoch).
    pub since: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// One event in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    /// The event's id.
    pub id: String,
    /// The route it arrived on.
    pub route: String,
    /// When it was accepted (milliseconds since the Unix epoch).
    pub received_at: i64,
    /// Its body's size in bytes.
    pub size: i64,
    /// Its dedup key.
    pub dedup_key: String,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
}

/// One event with everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDetail {
    /// What a listing shows.
    pub event: EventSummary,
    /// The request headers, credentials redacted when they were stored.
    pub headers: serde_json::Value,
    /// The client address the gateway believed.
    pub client_ip: String,
    /// Each delivery, with its attempts.
    pub deliveries: Vec<DeliveryDetail>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// Only deliveries in this state; all states when absent.
    pub state: Option<DeliveryState>,
    /// Only deliveries to this upstream.
    pub upstream: Option<String>,
    /// Only deliveries of events from this route.
    pub route: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// One delivery of an event to an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// The delivery's id.
    pub id: i64,
    /// The event it carries.
    pub event_id: String,
    /// The route the event arrived on.
    pub route: String,
    /// The upstream it goes to.
    pub upstream: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When its next attempt is due, or when it settled (milliseconds since the Unix epoch).
    pub due_at: i64,
    /// When it last changed.
    pub updated_at: i64,
    /// The last status the upstream answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryDetail {
    /// The delivery.
    pub delivery: DeliveryView,
    /// Every attempt made.
    pub attempts: Vec<AttemptView>,
}

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptView {
    /// Its number, from 1.
    pub attempt: u32,
    /// When it started (milliseconds since the Unix epoch).
    pub at: i64,
    /// The upstream's status, if it answered.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: i64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The first bytes of the answer, as text (invalid UTF-8 replaced).
    pub response_head: String,
}

/// Which dead letters to replay.
#[derive(Debug, Clone, Default)]
pub struct RetryFilter {
    /// Only deliveries to this upstream.
    pub upstream: Option<String>,
    /// Only deliveries of events from this route.
    pub route: Option<String>,
    /// Only deliveries with a larger id: a cursor for replaying in batches.
    pub after: i64,
    /// At most this many, lowest ids first; all when absent.
    pub limit: Option<usize>,
    /// Only deliveries to these upstreams: the configured ones, so dead letters of an
    /// upstream removed from the file stay dead.
    pub among: Vec<String>,
}

/// The outcome of replaying one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOne {
    /// It is pending again, due now.
    Retried {
        /// Its upstream, whose scheduler should be woken.
        upstream: String,
    },
    /// No delivery has that id.
    NotFound,
    /// It is not a dead letter.
    NotDead(DeliveryState),
}

/// The outcome of replaying every matching dead letter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetriedAll {
    /// How many were made pending again.
    pub retried: u64,
    /// The largest id replayed, the cursor for the next batch.
    pub last_id: Option<i64>,
    /// Matching dead letters with a larger id, not replayed yet.
    pub remaining: u64,
    /// The upstreams concerned, whose schedulers should be woken.
    pub upstreams: Vec<String>,
}

/// The limit to use: `asked`, or the default, never above [`MAX_LIMIT`].
pub fn clamp_limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_and_print_by_name() {
        for name in ["pending", "delivered", "dead", "paused"] {
            let state: DeliveryState = name.parse().unwrap();
            assert_eq!(state.to_string(), name);
            assert_eq!(serde_json::to_value(state).unwrap(), name);
        }
        assert!("gone".parse::<DeliveryState>().is_err());
    }

    #[test]
    fn limits_have_a_default_and_a_ceiling() {
        assert_eq!(clamp_limit(None), DEFAULT_LIMIT);
        assert_eq!(clamp_limit(Some(0)), 1);
        assert_eq!(clamp_limit(Some(1_000_000)), MAX_LIMIT);
    }
}
