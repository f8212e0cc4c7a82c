-- Device tags (docs/fleet.md) and rollout targeting by tag with a per-stage timeout (docs/ota.md).
-- +goose Up
CREATE TABLE device_tags (
    device_id TEXT NOT NULL,
    tag       TEXT NOT NULL,
    PRIMARY KEY (device_id, tag)
) STRICT, WITHOUT ROWID;
CREATE INDEX device_tags_by_tag ON device_tags (tag, device_id);

ALTER TABLE rollouts ADD COLUMN tag TEXT NOT NULL DEFAULT '';
ALTER TABLE rollouts ADD COLUMN stage_timeout_ms INTEGER NOT NULL DEFAULT 0;  -- 0: none
ALTER TABLE rollouts ADD COLUMN stage_opened_at INTEGER NOT NULL DEFAULT 0;   -- µs; when the open stage opened or was resumed

-- +goose Down
ALTER TABLE rollouts DROP COLUMN stage_opened_at;
ALTER TABLE rollouts DROP COLUMN stage_timeout_ms;
ALTER TABLE rollouts DROP COLUMN tag;
DROP TABLE device_tags;
