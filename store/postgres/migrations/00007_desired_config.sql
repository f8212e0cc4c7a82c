-- Desired configuration (docs/fleet.md): per product and per pot (the pot's wins), and what each
-- pot's grain last knew of the configuration the pot applied, so that drift is one query.
-- +goose Up
CREATE TABLE desired_configs (
    scope      text COLLATE "C" NOT NULL,  -- product | device
    key        text COLLATE "C" NOT NULL,  -- the product, or the device id
    config     text        NOT NULL,       -- protojson of sprout.device.v1.Config
    updated_at timestamptz NOT NULL,
    updated_by text        NOT NULL DEFAULT '',
    PRIMARY KEY (scope, key)
);

CREATE TABLE config_reports (
    device_id   text COLLATE "C" NOT NULL PRIMARY KEY,
    product     text COLLATE "C" NOT NULL,
    desired     text,            -- protojson; NULL: nothing desired
    applied     text,            -- protojson; NULL: nothing confirmed yet
    drift_since timestamptz,     -- NULL: in sync
    last_error  text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL
);
CREATE INDEX config_reports_drift ON config_reports (product, device_id) WHERE drift_since IS NOT NULL;

-- +goose Down
DROP TABLE config_reports;
DROP TABLE desired_configs;
