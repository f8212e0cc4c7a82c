-- WeChat's message rules: each push records the channel it took, WeChat's refusal code, the
-- template's msgid and its delivery receipt; pushes about one pot reach a user in order
-- (order_key); and each user's reachability (follow state, last own action, the
-- customer-service allowance left) is kept where every node's pusher consumes it atomically.
-- +goose Up
ALTER TABLE pushes ADD COLUMN order_key text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE pushes ADD COLUMN channel text NOT NULL DEFAULT '';
ALTER TABLE pushes ADD COLUMN errcode integer NOT NULL DEFAULT 0;
ALTER TABLE pushes ADD COLUMN msg_id text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE pushes ADD COLUMN receipt text NOT NULL DEFAULT '';
CREATE INDEX pushes_order ON pushes (order_key, created_at) WHERE status = 'pending' AND order_key <> '';
CREATE INDEX pushes_by_msg_id ON pushes (msg_id) WHERE msg_id <> '';
CREATE INDEX pushes_failed ON pushes (created_at) WHERE status = 'failed';

CREATE TABLE wechat_contacts (
    open_id    text COLLATE "C" NOT NULL PRIMARY KEY,
    unfollowed boolean     NOT NULL DEFAULT false,
    kind       text        NOT NULL DEFAULT '',   -- the last own action: message | click | subscribe | scan
    at         timestamptz NOT NULL,              -- when it (or the last change) happened
    until      timestamptz NOT NULL DEFAULT 'epoch',
    sends_left integer     NOT NULL DEFAULT 0
);

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
