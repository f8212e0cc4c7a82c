-- WeChat users: who may see and control which device, user grain snapshots, and the push outbox.
-- +goose Up
CREATE TABLE bindings (
    device_id TEXT    NOT NULL,
    open_id   TEXT    NOT NULL,
    role      TEXT    NOT NULL,  -- owner | member
    bound_at  INTEGER NOT NULL,
    PRIMARY KEY (device_id, open_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX bindings_by_user ON bindings (open_id, bound_at);

-- The latest snapshot of each user grain, replaced in place.
CREATE TABLE users (
    open_id    TEXT    NOT NULL PRIMARY KEY,
    snapshot   BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- The push outbox: a message is added once (id is WeChat's client_msg_id), leased by one pusher
-- at a time, and completed as sent, failed, or pending again at next_attempt_at.
CREATE TABLE pushes (
    id              TEXT    NOT NULL PRIMARY KEY,
    open_id         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    payload         BLOB,
    created_at      INTEGER NOT NULL,
    status          TEXT    NOT NULL,            -- pending | sent | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,                     -- NULL: due at once
    last_error      TEXT    NOT NULL DEFAULT '',
    sent_at         INTEGER,
    lease_owner     TEXT,                        -- the pusher holding it, until lease_until
    lease_until     INTEGER
) STRICT;
CREATE INDEX pushes_pending ON pushes (created_at) WHERE status = 'pending';
CREATE INDEX pushes_by_user ON pushes (open_id, created_at);

-- +goose Down
DROP TABLE pushes;
DROP TABLE users;
DROP TABLE bindings;
