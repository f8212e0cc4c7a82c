-- Fencing of duplicate grain activations: each activation claims its device with a random epoch
-- on its first write; later writes carrying an older epoch are refused (actors.ErrFenced).
-- +goose Up
ALTER TABLE devices ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE devices DROP COLUMN epoch;
