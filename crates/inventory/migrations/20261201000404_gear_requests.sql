-- Idempotency-Key of POST /v1/gear: a retried request with the same key and body gets the
-- first answer instead of creating a second item.
CREATE TABLE gear_requests (
    owner_id     uuid        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    gear_id      uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, key)
);
