-- Workouts and per-user training settings.

CREATE TABLE activities (
    id           uuid PRIMARY KEY,
    owner_id     uuid        NOT NULL,
    sport        text        NOT NULL,
    name         text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    status       text        NOT NULL
                             CHECK (status IN ('planned', 'active', 'paused', 'finished', 'discarded')),
    visibility   text        NOT NULL CHECK (visibility IN ('public', 'followers', 'private')),
    source       text        NOT NULL CHECK (source IN ('live', 'upload', 'manual')),
    gear_id      uuid,
    device_id    uuid,
    commute      boolean     NOT NULL DEFAULT false,
    trainer      boolean     NOT NULL DEFAULT false,
    plan         jsonb,
    start_time   timestamptz,
    end_time     timestamptz,
    -- while paused: when the current pause began; paused_s: seconds of earlier pauses
    paused_at    timestamptz,
    paused_s     double precision NOT NULL DEFAULT 0,
    summary      jsonb       NOT NULL DEFAULT '{}',
    laps         jsonb       NOT NULL DEFAULT '[]',
    best_efforts jsonb       NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT activities_times CHECK (end_time IS NULL OR start_time IS NULL OR end_time >= start_time)
);

-- The owner's list: newest first, by start time (planned ones, without a start, by creation).
CREATE INDEX activities_owner_newest
    ON activities (owner_id, (coalesce(start_time, created_at)) DESC, id DESC);

-- Idempotency-Key of POST /v1/activities: the first answer is replayed for a retried request.
CREATE TABLE activity_requests (
    owner_id     uuid        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    activity_id  uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_id, key)
);

CREATE TABLE training_settings (
    user_id    uuid PRIMARY KEY,
    document   jsonb       NOT NULL,
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
