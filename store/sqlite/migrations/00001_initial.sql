-- Sprout's initial schema on SQLite. Times are INTEGER microseconds since the Unix epoch (UTC).
-- Tables are STRICT so that a wrongly typed value fails instead of being stored as something else.
-- +goose Up
CREATE TABLE devices (
    id         TEXT    NOT NULL PRIMARY KEY,
    product    TEXT    NOT NULL,
    secret     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER            -- NULL unless revoked
) STRICT;

-- One row per telemetry frame. The primary key makes a resent frame a no-op.
CREATE TABLE readings (
    device_id     TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    device_time   INTEGER,          -- NULL when the device did not know the time
    received_at   INTEGER NOT NULL,
    soil_moisture REAL,             -- NULL when the sensor gave no value (NaN)
    temperature   REAL,
    tank_level    REAL,
    supply_mv     INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX readings_by_time ON readings (device_id, received_at);

-- The per-device event log. id orders events logged at the same instant.
CREATE TABLE device_events (
    id        INTEGER NOT NULL PRIMARY KEY,
    device_id TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    seq       INTEGER NOT NULL DEFAULT 0, -- the telemetry seq for device events, 0 otherwise
    body      TEXT                        -- JSON, stored byte for byte
) STRICT;
CREATE INDEX device_events_by_time ON device_events (device_id, at, id);
-- A resent device Event frame is a no-op, like a resent reading.
CREATE UNIQUE INDEX device_events_by_seq ON device_events (device_id, seq) WHERE seq > 0;

-- The latest snapshot of each device grain, replaced in place.
CREATE TABLE snapshots (
    device_id  TEXT    NOT NULL PRIMARY KEY,
    body       BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE snapshots;
DROP TABLE device_events;
DROP TABLE readings;
DROP TABLE devices;
