-- Tables of the eventing tests only: a domain table the producer changes together with the
-- outbox, and an append-only log of effects with no unique key, so that applying an event
-- twice leaves two rows instead of being hidden by a constraint.

CREATE TABLE things (
    id         uuid PRIMARY KEY,
    label      text NOT NULL
);

CREATE TABLE effects (
    row_id     bigserial PRIMARY KEY,
    event_id   uuid        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
