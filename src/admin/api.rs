//! The operator API: events, deliveries and their attempts, replay of dead letters, and
//! pausing upstreams. Answers are JSON; errors are `{"error": CODE, "message": TEXT}`.
//!
//! A replay or a resume wakes the upstream's scheduler, so the deliveries go out at once,
//! at the upstream's own rate and concurrency.

use http::{Method, StatusCode, Uri, header};
use serde::Serialize;
use serde_json::json;

use super::query::{ApiError, Params, delivery_id};
use super::{Admin, Answer, text};
use crate::store::inspect::{
    DeliveryQuery, DeliveryState, EventDetail, EventQuery, RetryFilter, RetryOne, clamp_limit,
};
use crate::store::now_ms;

type Reply = Result<Answer, ApiError>;

/// Answers one request whose path starts with `/api/`.
pub(super) async fn handle(admin: &Admin, method: &Method, uri: &Uri) -> Answer {
    let path = uri.path().trim_start_matches("/api/");
    let segments: Vec<&str> = path.split('/').collect();
    let query = uri.query();
    let reply = match (method, segments.as_slice()) {
        (&Method::GET, ["events"]) => list_events(admin, query).await,
        (&Method::GET, ["events", id]) => show_event(admin, id, query).await,
        (&Method::GET, ["deliveries"]) => list_deliveries(admin, query).await,
        (&Method::POST, ["deliveries", "retry"]) => retry_all(admin, query).await,
        (&Method::POST, ["deliveries", id, "retry"]) => retry_one(admin, id, query).await,
        (&Method::POST, ["upstreams", name, "pause"]) => pause(admin, name, true, query).await,
        (&Method::POST, ["upstreams", name, "resume"]) => pause(admin, name, false, query).await,
        (_, ["events"] | ["events", _] | ["deliveries"]) => Err(wrong_method("GET")),
        (_, ["deliveries", "retry"] | ["deliveries", _, "retry"] | ["upstreams", _, _]) => {
            Err(wrong_method("POST"))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint {}", uri.path()),
        )),
    };
    reply.unwrap_or_else(|e| error(&e))
}

async fn list_events(admin: &Admin, query: Option<&str>) -> Reply {
    let params = Params::parse(query, &["route", "since", "limit"])?;
    let query = EventQuery {
        route: params.text("route"),
        since: params.since(now_ms())?,
        limit: clamp_limit(params.limit()?),
    };
    let events = admin.store.events(query).await?;
    Ok(json(StatusCode::OK, &json!({ "events": events })))
}

/// One event by its id, or the event a delivery carries, by the delivery's id.
async fn show_event(admin: &Admin, id: &str, query: Option<&str>) -> Reply {
    Params::parse(query, &[])?;
    let event_id = match id.parse::<i64>() {
        Ok(delivery) => match admin.store.delivery(delivery).await? {
            Some(found) => found.event_id,
            None => return Err(not_found("delivery", id)),
        },
        Err(_) => id.to_owned(),
    };
    let Some(event) = admin.store.event(&event_id).await? else {
        return Err(not_found("event", id));
    };
    Ok(json(StatusCode::OK, &event as &EventDetail))
}

async fn list_deliveries(admin: &Admin, query: Option<&str>) -> Reply {
    let params = Params::parse(query, &["state", "upstream", "route", "limit"])?;
    let query = DeliveryQuery {
        state: params.state()?,
        upstream: params.text("upstream"),
        route: params.text("route"),
        limit: clamp_limit(params.limit()?),
    };
    let deliveries = admin.store.deliveries(query).await?;
    Ok(json(StatusCode::OK, &json!({ "deliveries": deliveries })))
}

async fn retry_one(admin: &Admin, id: &str, query: Option<&str>) -> Reply {
    Params::parse(query, &[])?;
    let id = delivery_id(id)?;
    let Some(delivery) = admin.store.delivery(id).await? else {
        return Err(not_found("delivery", &id.to_string()));
    };
    if !admin.pauses.knows(&delivery.upstream) {
        return Err(no_scheduler(&delivery.upstream));
    }
    match admin.store.retry(id).await? {
        RetryOne::Retried { upstream } => admin.wakers.wake(&upstream),
        RetryOne::NotFound => return Err(not_found("delivery", &id.to_string())),
        RetryOne::NotDead(state) => return Err(not_dead(id, state)),
    }
    tracing::info!(delivery = id, upstream = %delivery.upstream, "dead letter replayed");
    let now = admin.store.delivery(id).await?;
    Ok(json(StatusCode::OK, &json!({ "delivery": now })))
}

async fn retry_all(admin: &Admin, query: Option<&str>) -> Reply {
    let params = Params::parse(query, &["state", "upstream", "route", "limit", "after"])?;
    if let Some(state) = params.state()?.filter(|s| *s != DeliveryState::Dead) {
        let message = format!("only dead deliveries are replayed, not {state}");
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_state", message));
    }
    let upstream = params.text("upstream");
    if let Some(name) = upstream.as_deref().filter(|n| !admin.pauses.knows(n)) {
        return Err(ApiError::unknown_upstream(name));
    }
    let filter = RetryFilter {
        upstream,
        route: params.text("route"),
        after: params.after()?,
        limit: params.limit()?,
        among: admin.pauses.names(),
    };
    let retried = admin.store.retry_all(filter).await?;
    for upstream in &retried.upstreams {
        admin.wakers.wake(upstream);
    }
    tracing::info!(count = retried.retried, "dead letters replayed");
    Ok(json(StatusCode::OK, &retried))
}

async fn pause(admin: &Admin, name: &str, paused: bool, query: Option<&str>) -> Reply {
    Params::parse(query, &[])?;
    if !admin.pauses.knows(name) {
        return Err(ApiError::unknown_upstream(name));
    }
    admin.store.set_paused(name, paused).await?;
    admin.pauses.set(name, paused);
    if paused {
        tracing::info!(upstream = name, "upstream paused");
    } else {
        tracing::info!(upstream = name, "upstream resumed");
        admin.wakers.wake(name);
    }
    Ok(json(
        StatusCode::OK,
        &json!({ "upstream": name, "paused": paused }),
    ))
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {what} {id}"),
    )
}

fn not_dead(id: i64, state: DeliveryState) -> ApiError {
    let message = format!("delivery {id} is {state}, not dead: only dead letters are replayed");
    ApiError::new(StatusCode::CONFLICT, "not_dead", message)
}

fn no_scheduler(upstream: &str) -> ApiError {
    let message = format!("upstream {upstream:?} is no longer configured; it cannot be replayed");
    ApiError::new(StatusCode::CONFLICT, "unknown_upstream", message)
}

fn wrong_method(allowed: &str) -> ApiError {
    let message = format!("this endpoint takes {allowed}");
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    )
}

fn error(e: &ApiError) -> Answer {
    json(e.status, &json!({ "error": e.code, "message": e.message }))
}

fn json(status: StatusCode, body: &impl Serialize) -> Answer {
    // Serializing these plain structures cannot fail; an empty object stands in if it did.
    let mut body = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    body.push('\n');
    let mut answer = text(status, &body);
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    answer
}
