-- Firmware updates over the air (docs/ota.md): images, content addressed by SHA-256, their signed
-- manifests per product and version, rollouts and each targeted pot's state.
-- +goose Up
CREATE TABLE firmware_blobs (
    sha256 BYTEA NOT NULL PRIMARY KEY,
    data   BYTEA NOT NULL
);

CREATE TABLE firmware (
    product    TEXT    COLLATE "C" NOT NULL,
    version    TEXT    COLLATE "C" NOT NULL,
    sha256     BYTEA    NOT NULL REFERENCES firmware_blobs (sha256),
    size       INTEGER NOT NULL,
    signature  BYTEA    NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (product, version)
);

CREATE TABLE rollouts (
    id                TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    product           TEXT    NOT NULL,
    version           TEXT    NOT NULL,
    stages            TEXT    NOT NULL,  -- cumulative percents, comma separated: 1,10,100
    stage             INTEGER NOT NULL,  -- index of the open stage
    failure_threshold DOUBLE PRECISION    NOT NULL,
    state             TEXT    NOT NULL,  -- running | paused | completed | aborted
    reason            TEXT    NOT NULL DEFAULT '',
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);

CREATE TABLE rollout_targets (
    rollout_id TEXT    COLLATE "C" NOT NULL REFERENCES rollouts (id),
    device_id  TEXT    COLLATE "C" NOT NULL,
    stage      INTEGER NOT NULL,
    state      TEXT    NOT NULL,  -- pending | offered | downloading | ... (actors.Target*)
    percent    INTEGER NOT NULL DEFAULT 0,
    reason     TEXT    NOT NULL DEFAULT '',
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_targets_by_device ON rollout_targets (device_id);

-- +goose Down
DROP TABLE rollout_targets;
DROP TABLE rollouts;
DROP TABLE firmware;
DROP TABLE firmware_blobs;
