-- Readings designed for append (issue 15). Each group commit writes its readings as one row of
-- reading_log (a compact encoding of all of them); a background compactor folds log rows older
-- than a few seconds into per-device, per-hour chunks (reading_chunks: key, seq range and
-- aggregates; reading_blobs: the encoded readings) and deletes the folded log rows in the same
-- transaction. The old per-reading table `readings` is converted into chunks by Open (Go code in
-- store/sqlite/convert.go, one device per transaction) and dropped once empty.
-- +goose Up
CREATE TABLE reading_log (
    id   INTEGER NOT NULL PRIMARY KEY, -- commit order = time order
    data BLOB    NOT NULL              -- readings of one group commit (store/sqlite/codec.go)
) STRICT;

CREATE TABLE reading_blobs (
    id   INTEGER NOT NULL PRIMARY KEY,
    data BLOB    NOT NULL              -- one chunk's readings, by (received_at, seq)
) STRICT;

-- One row per chunk: the readings of one device received in one UTC hour (hour: its start, µs).
-- A compaction adds a part per (device, hour); once the hour is complete its parts are merged into
-- sealed parts of at most MaxChunkReadings readings. *_n counts the non-NaN values of a metric,
-- *_sum their sum; min/max are NULL when *_n is 0.
CREATE TABLE reading_chunks (
    device_id    TEXT    NOT NULL,
    hour         INTEGER NOT NULL,
    part         INTEGER NOT NULL,
    sealed       INTEGER NOT NULL,
    seq_min      INTEGER NOT NULL,
    seq_max      INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    moisture_n   INTEGER NOT NULL,
    moisture_min REAL,
    moisture_sum REAL    NOT NULL,
    moisture_max REAL,
    temp_n       INTEGER NOT NULL,
    temp_min     REAL,
    temp_sum     REAL    NOT NULL,
    temp_max     REAL,
    tank_n       INTEGER NOT NULL,
    tank_min     REAL,
    tank_sum     REAL    NOT NULL,
    tank_max     REAL,
    blob         INTEGER NOT NULL,     -- reading_blobs.id
    PRIMARY KEY (device_id, hour, part)
) STRICT, WITHOUT ROWID;
-- The latest reading of a device and the exact duplicate check (seq below the device's max).
CREATE INDEX reading_chunks_by_seq ON reading_chunks (device_id, seq_max, seq_min);
-- Rollup and expiry walk chunks by hour across all devices.
CREATE INDEX reading_chunks_by_hour ON reading_chunks (hour);
-- Parts still to be merged.
CREATE INDEX reading_chunks_unsealed ON reading_chunks (hour, device_id) WHERE sealed = 0;

-- +goose Down
-- Readings in chunks are not moved back: the old table comes back empty.
DROP TABLE reading_chunks;
DROP TABLE reading_blobs;
DROP TABLE reading_log;
CREATE TABLE IF NOT EXISTS readings (
    device_id     TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    device_time   INTEGER,
    received_at   INTEGER NOT NULL,
    soil_moisture REAL,
    temperature   REAL,
    tank_level    REAL,
    supply_mv     INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (device_id, received_at);
CREATE INDEX IF NOT EXISTS readings_by_received ON readings (received_at);
