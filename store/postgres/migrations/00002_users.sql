-- WeChat users: who may see and control which device, user grain snapshots, and the push outbox.
-- +goose Up
CREATE TABLE bindings (
    device_id text COLLATE "C" NOT NULL,
    open_id   text COLLATE "C" NOT NULL,
    role      text        NOT NULL,  -- owner | member
    bound_at  timestamptz NOT NULL,
    PRIMARY KEY (device_id, open_id)
);
CREATE INDEX bindings_by_user ON bindings (open_id, bound_at);

-- The latest snapshot of each user grain, replaced in place.
CREATE TABLE users (
    open_id    text COLLATE "C" NOT NULL PRIMARY KEY,
    snapshot   bytea       NOT NULL,
    updated_at timestamptz NOT NULL
);

-- The push outbox: a message is added once (id is WeChat's client_msg_id), leased by one pusher
-- at a time (SELECT ... FOR UPDATE SKIP LOCKED), and completed as sent, failed, or pending again
-- at next_attempt_at.
CREATE TABLE pushes (
    id              text COLLATE "C" NOT NULL PRIMARY KEY,
    open_id         text COLLATE "C" NOT NULL,
    kind            text        NOT NULL,
    payload         bytea,
    created_at      timestamptz NOT NULL,
    status          text        NOT NULL,            -- pending | sent | failed
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,                     -- NULL: due at once
    last_error      text        NOT NULL DEFAULT '',
    sent_at         timestamptz,
    lease_owner     text,                            -- the pusher holding it, until lease_until
    lease_until     timestamptz
);
CREATE INDEX pushes_pending ON pushes (created_at) WHERE status = 'pending';
CREATE INDEX pushes_by_user ON pushes (open_id, created_at);

-- +goose Down
DROP TABLE pushes;
DROP TABLE users;
DROP TABLE bindings;
