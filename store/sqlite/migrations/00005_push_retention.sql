-- Retention of the push outbox: pushes whose fate is recorded (sent, failed) expire after
-- RetentionOptions.Pushes; this index finds them without scanning the pending ones.
-- +goose Up
CREATE INDEX pushes_done ON pushes (created_at) WHERE status <> 'pending';

-- +goose Down
DROP INDEX pushes_done;
