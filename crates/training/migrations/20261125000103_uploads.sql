-- Uploaded workout files. The file is kept until it is processed, so an upload survives a
-- restart; a worker on any replica picks up what is waiting (SKIP LOCKED).
CREATE TABLE uploads (
    id          uuid PRIMARY KEY,
    owner_id    uuid        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('processing', 'ready', 'error')),
    file_name   text        NOT NULL,
    file_sha256 bytea       NOT NULL,
    file        bytea,
    name        text,
    sport       text,
    external_id text,
    activity_id uuid,
    error       text,
    attempts    integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX uploads_waiting ON uploads (created_at) WHERE status = 'processing';
CREATE INDEX uploads_by_owner_hash ON uploads (owner_id, file_sha256);

-- Multisport legs with their own sport and totals.
ALTER TABLE activities ADD COLUMN legs jsonb NOT NULL DEFAULT '[]';
ALTER TABLE activities ADD COLUMN external_id text;
