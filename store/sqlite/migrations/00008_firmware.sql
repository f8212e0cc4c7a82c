-- Firmware updates over the air (docs/ota.md): images, content addressed by SHA-256, their signed
-- manifests per product and version, rollouts and each targeted pot's state.
-- +goose Up
CREATE TABLE firmware_blobs (
    sha256 BLOB NOT NULL PRIMARY KEY,
    data   BLOB NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE firmware (
    product    TEXT    NOT NULL,
    version    TEXT    NOT NULL,
    sha256     BLOB    NOT NULL REFERENCES firmware_blobs (sha256),
    size       INTEGER NOT NULL,
    signature  BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (product, version)
) STRICT;

CREATE TABLE rollouts (
    id                TEXT    NOT NULL PRIMARY KEY,
    product           TEXT    NOT NULL,
    version           TEXT    NOT NULL,
    stages            TEXT    NOT NULL,  -- cumulative percents, comma separated: 1,10,100
    stage             INTEGER NOT NULL,  -- index of the open stage
    failure_threshold REAL    NOT NULL,
    state             TEXT    NOT NULL,  -- running | paused | completed | aborted
    reason            TEXT    NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;

CREATE TABLE rollout_targets (
    rollout_id TEXT    NOT NULL REFERENCES rollouts (id),
    device_id  TEXT    NOT NULL,
    stage      INTEGER NOT NULL,
    state      TEXT    NOT NULL,  -- pending | offered | downloading | ... (actors.Target*)
    percent    INTEGER NOT NULL DEFAULT 0,
    reason     TEXT    NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX rollout_targets_by_device ON rollout_targets (device_id);

-- +goose Down
DROP TABLE rollout_targets;
DROP TABLE rollouts;
DROP TABLE firmware;
DROP TABLE firmware_blobs;
