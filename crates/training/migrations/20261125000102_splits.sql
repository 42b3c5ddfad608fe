-- Automatic per-kilometre splits, computed from the samples at finish or import.
ALTER TABLE activities ADD COLUMN splits jsonb NOT NULL DEFAULT '[]';
