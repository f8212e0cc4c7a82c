-- Desired configuration (docs/fleet.md): per product and per pot (the pot's wins), and what each
-- pot's grain last knew of the configuration the pot applied, so that drift is one query.
-- +goose Up
CREATE TABLE desired_configs (
    scope      TEXT    NOT NULL,  -- product | device
    key        TEXT    NOT NULL,  -- the product, or the device id
    config     TEXT    NOT NULL,  -- protojson of sprout.device.v1.Config
    updated_at INTEGER NOT NULL,  -- µs since the epoch
    updated_by TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (scope, key)
) STRICT, WITHOUT ROWID;

CREATE TABLE config_reports (
    device_id   TEXT    NOT NULL PRIMARY KEY,
    product     TEXT    NOT NULL,
    desired     TEXT,             -- protojson; NULL: nothing desired
    applied     TEXT,             -- protojson; NULL: nothing confirmed yet
    drift_since INTEGER,          -- µs; NULL: in sync
    last_error  TEXT    NOT NULL DEFAULT '',
    updated_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX config_reports_drift ON config_reports (product, device_id) WHERE drift_since IS NOT NULL;

-- +goose Down
DROP TABLE config_reports;
DROP TABLE desired_configs;
