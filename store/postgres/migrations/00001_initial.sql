-- Sprout's initial schema on Postgres (14 or later: Buckets uses date_bin).
-- Ids are COLLATE "C" so that ListDevices pages in byte order, as on SQLite, whatever the
-- database's locale. Times are timestamptz (microsecond resolution).
-- +goose Up
CREATE TABLE devices (
    id         text COLLATE "C" NOT NULL PRIMARY KEY,
    product    text        NOT NULL,
    secret     bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz            -- NULL unless revoked
);

-- One row per telemetry frame. The primary key makes a resent frame a no-op.
CREATE TABLE readings (
    device_id     text COLLATE "C" NOT NULL,
    seq           bigint      NOT NULL,
    device_time   timestamptz,          -- NULL when the device did not know the time
    received_at   timestamptz NOT NULL,
    soil_moisture real,                 -- NULL when the sensor gave no value (NaN)
    temperature   real,
    tank_level    real,
    supply_mv     bigint      NOT NULL, -- a uint32 does not fit integer
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX readings_by_time ON readings (device_id, received_at);

-- The per-device event log. id orders events logged at the same instant.
CREATE TABLE device_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id text COLLATE "C" NOT NULL,
    at        timestamptz NOT NULL,
    kind      text        NOT NULL,
    seq       bigint      NOT NULL DEFAULT 0, -- the telemetry seq for device events, 0 otherwise
    body      json                            -- json, not jsonb: stored byte for byte
);
CREATE INDEX device_events_by_time ON device_events (device_id, at, id);
-- A resent device Event frame is a no-op, like a resent reading.
CREATE UNIQUE INDEX device_events_by_seq ON device_events (device_id, seq) WHERE seq > 0;

-- The latest snapshot of each device grain, replaced in place.
CREATE TABLE snapshots (
    device_id  text COLLATE "C" NOT NULL PRIMARY KEY,
    body       bytea       NOT NULL,
    updated_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE snapshots;
DROP TABLE device_events;
DROP TABLE readings;
DROP TABLE devices;
