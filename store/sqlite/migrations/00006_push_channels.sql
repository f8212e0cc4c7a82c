-- WeChat's message rules: each push records the channel it took, WeChat's refusal code, the
-- template's msgid and its delivery receipt; pushes about one pot reach a user in order
-- (order_key); and each user's reachability (follow state, last own action, the
-- customer-service allowance left) is kept where every node's pusher consumes it atomically.
-- +goose Up
ALTER TABLE pushes ADD COLUMN order_key TEXT NOT NULL DEFAULT '';
ALTER TABLE pushes ADD COLUMN channel TEXT NOT NULL DEFAULT '';
ALTER TABLE pushes ADD COLUMN errcode INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pushes ADD COLUMN msg_id TEXT NOT NULL DEFAULT '';
ALTER TABLE pushes ADD COLUMN receipt TEXT NOT NULL DEFAULT '';
CREATE INDEX pushes_order ON pushes (order_key, created_at) WHERE status = 'pending' AND order_key <> '';
CREATE INDEX pushes_by_msg_id ON pushes (msg_id) WHERE msg_id <> '';
CREATE INDEX pushes_failed ON pushes (created_at) WHERE status = 'failed';

CREATE TABLE wechat_contacts (
    open_id    TEXT    NOT NULL PRIMARY KEY,
    unfollowed INTEGER NOT NULL DEFAULT 0,
    kind       TEXT    NOT NULL DEFAULT '',  -- the last own action: message | click | subscribe | scan
    at         INTEGER NOT NULL,             -- when it (or the last change) happened, µs
    until      INTEGER NOT NULL DEFAULT 0,   -- the window's end, µs
    sends_left INTEGER NOT NULL DEFAULT 0
) STRICT;

-- +goose Down
DROP TABLE wechat_contacts;
DROP INDEX pushes_failed;
DROP INDEX pushes_by_msg_id;
DROP INDEX pushes_order;
ALTER TABLE pushes DROP COLUMN receipt;
ALTER TABLE pushes DROP COLUMN msg_id;
ALTER TABLE pushes DROP COLUMN errcode;
ALTER TABLE pushes DROP COLUMN channel;
ALTER TABLE pushes DROP COLUMN order_key;
