-- Retention: hourly aggregates of readings, kept longer than the raw readings, and where the
-- rollup and the expiry have got to. Written by Store.Maintain.
-- +goose Up
-- One row per device per hour (hour: its start, a whole UTC hour). *_n counts the non-NULL values
-- of a metric, so that hours combine into longer buckets with the right average.
CREATE TABLE reading_hours (
    device_id    text COLLATE "C" NOT NULL,
    hour         timestamptz      NOT NULL,
    count        bigint           NOT NULL,
    moisture_n   bigint           NOT NULL,
    moisture_min real,
    moisture_avg double precision,
    moisture_max real,
    temp_n       bigint           NOT NULL,
    temp_min     real,
    temp_avg     double precision,
    temp_max     real,
    tank_n       bigint           NOT NULL,
    tank_min     real,
    tank_avg     double precision,
    tank_max     real,
    PRIMARY KEY (device_id, hour)
);
CREATE INDEX reading_hours_by_hour ON reading_hours (hour);

-- Rollup and expiry walk readings by time across all devices.
CREATE INDEX readings_by_received ON readings (received_at);

-- One row. rolled_until: every hour before it is in reading_hours. raw_from: raw readings before
-- it have expired (each device's latest is kept), so Buckets reads reading_hours there.
CREATE TABLE retention (
    id           integer NOT NULL PRIMARY KEY CHECK (id = 1),
    rolled_until timestamptz,
    raw_from     timestamptz
);
INSERT INTO retention (id) VALUES (1);

-- +goose Down
DROP TABLE retention;
DROP INDEX readings_by_received;
DROP TABLE reading_hours;
