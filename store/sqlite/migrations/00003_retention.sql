-- Retention: hourly aggregates of readings, kept longer than the raw readings, and where the
-- rollup and the expiry have got to. Written by Store.Maintain.
-- +goose Up
-- One row per device per hour (hour: its start, µs since the epoch, a whole UTC hour). *_n counts
-- the non-NULL values of a metric, so that hours combine into longer buckets with the right average.
CREATE TABLE reading_hours (
    device_id    TEXT    NOT NULL,
    hour         INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    moisture_n   INTEGER NOT NULL,
    moisture_min REAL,
    moisture_avg REAL,
    moisture_max REAL,
    temp_n       INTEGER NOT NULL,
    temp_min     REAL,
    temp_avg     REAL,
    temp_max     REAL,
    tank_n       INTEGER NOT NULL,
    tank_min     REAL,
    tank_avg     REAL,
    tank_max     REAL,
    PRIMARY KEY (device_id, hour)
) STRICT, WITHOUT ROWID;
CREATE INDEX reading_hours_by_hour ON reading_hours (hour);

-- Rollup and expiry walk readings by time across all devices.
CREATE INDEX readings_by_received ON readings (received_at);

-- One row. rolled_until: every hour before it is in reading_hours. raw_from: raw readings before
-- it have expired (each device's latest is kept), so Buckets reads reading_hours there.
CREATE TABLE retention (
    id           INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    rolled_until INTEGER,
    raw_from     INTEGER
) STRICT;
INSERT INTO retention (id) VALUES (1);

-- +goose Down
DROP TABLE retention;
DROP INDEX readings_by_received;
DROP TABLE reading_hours;
