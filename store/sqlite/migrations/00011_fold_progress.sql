-- A fold of the reading log into chunks runs as several short transactions, a few devices each,
-- so appends never wait long for the one writer (store/README.md). This row says how far an
-- unfinished fold got: in reading_log rows up to log_id, the readings of every device up to
-- device_id (in byte order) are in chunks already. No row: no fold in progress.
-- +goose Up
CREATE TABLE fold_progress (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    log_id    INTEGER NOT NULL,
    device_id TEXT NOT NULL
) STRICT;

-- +goose Down
DROP TABLE fold_progress;
