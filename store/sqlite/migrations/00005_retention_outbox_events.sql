-- Retention of the push outbox and the device event log. Pushes whose fate is recorded (sent,
-- failed) expire after RetentionOptions.Pushes, events after RetentionOptions.Events; these
-- indexes find them without scanning what stays.
-- +goose Up
CREATE INDEX pushes_done ON pushes (created_at) WHERE status <> 'pending';
CREATE INDEX device_events_at ON device_events (at);

-- +goose Down
DROP INDEX device_events_at;
DROP INDEX pushes_done;
