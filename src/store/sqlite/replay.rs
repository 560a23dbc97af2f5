//! The embedded store's write side for operators: replaying dead letters and pausing
//! upstreams. These run on the writer thread, inside its batch transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::inspect::{STATE, state_at};
use crate::store::StoreError;
use crate::store::inspect::{DeliveryState, RetriedAll, RetryFilter, RetryOne};

/// Makes one dead letter pending again, due `now`; its attempts and their count stay.
pub(super) fn retry(conn: &Connection, id: i64, now: i64) -> Result<RetryOne, StoreError> {
    let sql = format!("SELECT d.upstream, {STATE} FROM deliveries d WHERE d.id = ?1");
    let found = conn
        .prepare_cached(&sql)?
        .query_row(params![id], |r| {
            Ok((r.get::<_, String>(0)?, state_at(r, 1)?))
        })
        .optional()?;
    let Some((upstream, state)) = found else {
        return Ok(RetryOne::NotFound);
    };
    if state != DeliveryState::Dead {
        return Ok(RetryOne::NotDead(state));
    }
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'pending', due_at = ?2, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(RetryOne::Retried { upstream })
}

/// Dead letters matching a filter, lowest id first. Parameters: `?1` the id cursor, `?2`
/// the upstream, `?3` the route, `?4` the limit (`-1` for none), `?5` a JSON array of the
/// upstreams that may be replayed.
const MATCHING: &str =
    "SELECT d.id, d.upstream FROM deliveries d JOIN events e ON e.id = d.event_id
     WHERE d.state = 'dead' AND d.id > ?1 AND (?2 IS NULL OR d.upstream = ?2)
       AND (?3 IS NULL OR e.route = ?3)
       AND d.upstream IN (SELECT value FROM json_each(?5))
     ORDER BY d.id LIMIT ?4";

/// Makes every dead letter matching `filter` pending again, due `now`.
pub(super) fn retry_all(
    conn: &Connection,
    filter: &RetryFilter,
    now: i64,
) -> Result<RetriedAll, StoreError> {
    let limit = filter.limit.map_or(-1, |l| l as i64);
    let among = serde_json::Value::from(filter.among.clone()).to_string();
    let args = params![filter.after, filter.upstream, filter.route, limit, among];

    let mut stmt = conn.prepare_cached(&format!(
        "SELECT DISTINCT upstream FROM ({MATCHING}) ORDER BY upstream"
    ))?;
    let upstreams = stmt
        .query_map(args, |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let (retried, last_id): (i64, Option<i64>) = conn
        .prepare_cached(&format!("SELECT COUNT(*), MAX(id) FROM ({MATCHING})"))?
        .query_row(args, |r| Ok((r.get(0)?, r.get(1)?)))?;
    conn.prepare_cached(&format!(
        "UPDATE deliveries SET state = 'pending', due_at = ?6, updated_at = ?6
         WHERE id IN (SELECT id FROM ({MATCHING}))"
    ))?
    .execute(params![
        filter.after,
        filter.upstream,
        filter.route,
        limit,
        among,
        now
    ])?;
    // Those just replayed are no longer dead: what still matches is what is left.
    let remaining: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM ({MATCHING})"))?
        .query_row(
            params![filter.after, filter.upstream, filter.route, -1, among],
            |r| r.get(0),
        )?;
    Ok(RetriedAll {
        retried: retried as u64,
        last_id,
        remaining: remaining as u64,
        upstreams,
    })
}

/// Records that `upstream` is paused, or forgets it.
pub(super) fn set_paused(
    conn: &Connection,
    upstream: &str,
    paused: bool,
    now: i64,
) -> Result<(), StoreError> {
    if paused {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO paused_upstreams (upstream, paused_at) VALUES (?1, ?2)",
        )?
        .execute(params![upstream, now])?;
    } else {
        conn.prepare_cached("DELETE FROM paused_upstreams WHERE upstream = ?1")?
            .execute(params![upstream])?;
    }
    Ok(())
}
