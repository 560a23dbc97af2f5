//! The embedded store's read side for operators: events, deliveries and attempts, read on
//! the reader connection.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::inspect::{
    AttemptView, DeliveryDetail, DeliveryQuery, DeliveryState, DeliveryView, EventDetail,
    EventQuery, EventSummary,
};

/// A delivery's state as an operator sees it: pending deliveries of a paused upstream are
/// `paused`.
pub(super) const STATE: &str = "CASE WHEN d.state = 'pending' AND EXISTS
        (SELECT 1 FROM paused_upstreams p WHERE p.upstream = d.upstream)
    THEN 'paused' ELSE d.state END";

const EVENT_COLUMNS: &str = "e.id, e.route, e.received_at, coalesce(e.body_file, length(e.body)), e.dedup_key, e.content_type";

/// Recent events, newest first.
pub(super) fn events(conn: &Connection, q: &EventQuery) -> rusqlite::Result<Vec<EventSummary>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events e
         WHERE (?1 IS NULL OR e.route = ?1) AND (?2 IS NULL OR e.received_at >= ?2)
         ORDER BY e.received_at DESC, e.id DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![q.route, q.since, q.limit as i64], event_row)?;
    rows.collect()
}

/// One event, its deliveries, and their attempts.
pub(super) fn event(conn: &Connection, id: &str) -> rusqlite::Result<Option<EventDetail>> {
    let sql =
        format!("SELECT {EVENT_COLUMNS}, e.headers, e.client_ip FROM events e WHERE e.id = ?1");
    let found = conn
        .prepare_cached(&sql)?
        .query_row(params![id], |r| {
            Ok((
                event_row(r)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })
        .optional()?;
    let Some((event, headers, client_ip)) = found else {
        return Ok(None);
    };
    let headers = serde_json::from_str(&headers).unwrap_or(serde_json::Value::String(headers));
    let mut deliveries = Vec::new();
    for delivery in deliveries_of(conn, id)? {
        let attempts = attempts_of(conn, delivery.id)?;
        deliveries.push(DeliveryDetail { delivery, attempts });
    }
    Ok(Some(EventDetail {
        event,
        headers,
        client_ip,
        deliveries,
    }))
}

fn event_row(r: &Row) -> rusqlite::Result<EventSummary> {
    Ok(EventSummary {
        id: r.get(0)?,
        route: r.get(1)?,
        received_at: r.get(2)?,
        size: r.get(3)?,
        dedup_key: r.get(4)?,
        content_type: r.get(5)?,
    })
}

fn delivery_sql(filter: &str, order: &str) -> String {
    format!(
        "SELECT d.id, d.event_id, e.route, d.upstream, {STATE}, d.attempts, d.due_at,
                d.updated_at, d.last_status, d.last_error
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE {filter} ORDER BY {order}"
    )
}

/// Deliveries matching `q`, newest first.
pub(super) fn deliveries(
    conn: &Connection,
    q: &DeliveryQuery,
) -> rusqlite::Result<Vec<DeliveryView>> {
    let filter = format!(
        "(?1 IS NULL OR {STATE} = ?1) AND (?2 IS NULL OR d.upstream = ?2)
         AND (?3 IS NULL OR e.route = ?3)"
    );
    let sql = delivery_sql(&filter, "d.id DESC LIMIT ?4");
    let state = q.state.map(DeliveryState::as_str);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![state, q.upstream, q.route, q.limit as i64],
        delivery_row,
    )?;
    rows.collect()
}

/// One delivery.
pub(super) fn delivery(conn: &Connection, id: i64) -> rusqlite::Result<Option<DeliveryView>> {
    conn.prepare_cached(&delivery_sql("d.id = ?1", "d.id"))?
        .query_row(params![id], delivery_row)
        .optional()
}

fn deliveries_of(conn: &Connection, event_id: &str) -> rusqlite::Result<Vec<DeliveryView>> {
    let mut stmt = conn.prepare_cached(&delivery_sql("d.event_id = ?1", "d.id"))?;
    let rows = stmt.query_map(params![event_id], delivery_row)?;
    rows.collect()
}

fn delivery_row(r: &Row) -> rusqlite::Result<DeliveryView> {
    Ok(DeliveryView {
        id: r.get(0)?,
        event_id: r.get(1)?,
        route: r.get(2)?,
        upstream: r.get(3)?,
        state: state_at(r, 4)?,
        attempts: r.get(5)?,
        due_at: r.get(6)?,
        updated_at: r.get(7)?,
        last_status: r.get(8)?,
        last_error: r.get(9)?,
    })
}

/// Reads a state column, refusing a name the store does not write.
pub(super) fn state_at(r: &Row, index: usize) -> rusqlite::Result<DeliveryState> {
    let name: String = r.get(index)?;
    name.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

fn attempts_of(conn: &Connection, delivery_id: i64) -> rusqlite::Result<Vec<AttemptView>> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, at, status, latency_ms, error, response_head
         FROM attempts WHERE delivery_id = ?1 ORDER BY attempt",
    )?;
    let rows = stmt.query_map(params![delivery_id], |r| {
        Ok(AttemptView {
            attempt: r.get(0)?,
            at: r.get(1)?,
            status: r.get(2)?,
            latency_ms: r.get(3)?,
            error: r.get(4)?,
            response_head: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(5)?).into_owned(),
        })
    })?;
    rows.collect()
}

/// The upstreams paused now.
pub(super) fn paused(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT upstream FROM paused_upstreams ORDER BY upstream")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}
