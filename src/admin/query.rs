//! Reading the operator API's query strings, and the errors it answers with.
//!
//! Every parameter is checked: an unknown name or a value that does not parse is a `400`
//! naming it, never a silent default. An empty value (`route=`) counts as absent.

use std::collections::HashMap;

use http::StatusCode;

use crate::config::units::parse_duration;
use crate::store::StoreError;
use crate::store::inspect::{DeliveryState, MAX_LIMIT};

/// An answer other than success: a status, a short code and a message for people.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn bad_query(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message)
    }

    pub(super) fn unknown_upstream(name: &str) -> Self {
        let message = format!("no upstream named {name:?} is configured");
        ApiError::new(StatusCode::NOT_FOUND, "unknown_upstream", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::warn!(%error, "admin API: store failed");
        let message = "the store cannot answer now; try again";
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            message,
        )
    }
}

/// A query string's parameters, checked against the names an endpoint takes.
#[derive(Debug)]
pub(super) struct Params(HashMap<String, String>);

impl Params {
    /// Parses `query`, refusing names outside `allowed` and repeated names.
    pub(super) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut params = HashMap::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if !allowed.contains(&&*name) {
                let expected = allowed.join(", ");
                return Err(ApiError::bad_query(format!(
                    "unknown parameter {name:?}; this endpoint takes {expected}"
                )));
            }
            if params
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(ApiError::bad_query(format!("{name:?} is given twice")));
            }
        }
        Ok(Params(params))
    }

    /// A text parameter, absent when empty.
    pub(super) fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// `limit`: a whole number from 1 up to the store's ceiling.
    pub(super) fn limit(&self) -> Result<Option<usize>, ApiError> {
        let Some(text) = self.text("limit") else {
            return Ok(None);
        };
        match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_query(format!(
                "limit {text:?} must be a whole number from 1 to {MAX_LIMIT}"
            ))),
        }
    }

    /// `state`: one of the delivery states.
    pub(super) fn state(&self) -> Result<Option<DeliveryState>, ApiError> {
        self.text("state")
            .map(|s| s.parse().map_err(ApiError::bad_query))
            .transpose()
    }

    /// `since`: milliseconds since the Unix epoch, or a duration back from `now` (`"1h"`).
    pub(super) fn since(&self, now: i64) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.text("since") else {
            return Ok(None);
        };
        if let Ok(ms) = text.parse::<i64>() {
            return Ok(Some(ms));
        }
        let back = parse_duration(&text).map_err(|error| {
            ApiError::bad_query(format!(
                "since: {error}; write milliseconds since the epoch or a duration such as \"1h\""
            ))
        })?;
        Ok(Some(now.saturating_sub(crate::store::millis(back))))
    }

    /// `after`: a delivery id cursor, 0 when absent.
    pub(super) fn after(&self) -> Result<i64, ApiError> {
        let Some(text) = self.text("after") else {
            return Ok(0);
        };
        text.parse::<i64>()
            .map_err(|_| ApiError::bad_query(format!("after {text:?} must be a delivery id")))
    }
}

/// A delivery id from a path segment.
pub(super) fn delivery_id(segment: &str) -> Result<i64, ApiError> {
    segment.parse::<i64>().map_err(|_| {
        let message = format!("{segment:?} is not a delivery id (a whole number)");
        ApiError::new(StatusCode::BAD_REQUEST, "bad_id", message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_names_are_refused() {
        assert!(Params::parse(Some("route=a"), &["route"]).is_ok());
        let unknown = Params::parse(Some("rout=a"), &["route"]).unwrap_err();
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
        assert!(unknown.message.contains("rout"));
        assert!(Params::parse(Some("route=a&route=b"), &["route"]).is_err());
    }

    #[test]
    fn values_are_checked_and_empty_ones_are_absent() {
        let p = Params::parse(
            Some("route=&limit=5&state=dead&since=1h"),
            &["route", "limit", "state", "since"],
        )
        .unwrap();
        assert_eq!(p.text("route"), None);
        assert_eq!(p.limit().unwrap(), Some(5));
        assert_eq!(p.state().unwrap(), Some(DeliveryState::Dead));
        assert_eq!(p.since(10_000_000).unwrap(), Some(10_000_000 - 3_600_000));

        let bad = Params::parse(
            Some("limit=0&state=lost&since=soon&after=x"),
            &["limit", "state", "since", "after"],
        )
        .unwrap();
        assert!(bad.limit().is_err() && bad.state().is_err());
        assert!(bad.since(0).is_err() && bad.after().is_err());
        assert!(delivery_id("12").is_ok() && delivery_id("x1").is_err());

        let wrapping = Params::parse(Some("since=200000000000d"), &["since"]).unwrap();
        let error = wrapping.since(10_000_000).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.contains("36500d"), "{}", error.message);
    }
}
