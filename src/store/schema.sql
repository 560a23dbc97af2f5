-- The embedded store's schema. Times are milliseconds since the Unix epoch.

CREATE TABLE IF NOT EXISTS events (
    id           TEXT PRIMARY KEY,
    route        TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    dedup_key    TEXT NOT NULL,
    headers      TEXT NOT NULL,
    content_type TEXT,
    client_ip    TEXT NOT NULL,
    proto        TEXT NOT NULL,
    -- The body, or nothing when it is kept in a file of its own (`body_file` is set).
    body         BLOB NOT NULL,
    -- The size of a body kept in `<database>-bodies/<id>`; NULL when it is in `body`.
    body_file    INTEGER
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (received_at);

CREATE TABLE IF NOT EXISTS dedup (
    route      TEXT NOT NULL,
    key        TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (route, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup (expires_at);

CREATE TABLE IF NOT EXISTS deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL REFERENCES events (id),
    upstream    TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    last_status INTEGER,
    last_error  TEXT
);
-- Only the deliveries still to make are indexed for the queue, and only dead letters for
-- replaying: a delivery that succeeds leaves both, and the common path writes no entry
-- it would have to move.
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (upstream, due_at)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (id) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_id);

CREATE TABLE IF NOT EXISTS attempts (
    delivery_id   INTEGER NOT NULL REFERENCES deliveries (id),
    attempt       INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    status        INTEGER,
    latency_ms    INTEGER NOT NULL,
    error         TEXT,
    response_head BLOB NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Upstreams an operator paused: they get no new attempts until resumed.
CREATE TABLE IF NOT EXISTS paused_upstreams (
    upstream  TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
);

-- Indexes of earlier versions, which the queries above no longer need.
DROP INDEX IF EXISTS events_by_route_time;
DROP INDEX IF EXISTS deliveries_due;
DROP INDEX IF EXISTS deliveries_by_state;
