-- Gear and its wear. Wear of an item = its initial distance and time + the sum of its
-- wear_entries; the totals on `gear` are kept with the entries in the same transaction (the
-- incremental path) and always equal a recomputation from the entries.

CREATE TABLE gear (
    id                    uuid PRIMARY KEY,
    owner_id              uuid             NOT NULL,
    kind                  text             NOT NULL,
    component_type        text,
    name                  text             NOT NULL,
    brand                 text             NOT NULL DEFAULT '',
    model                 text             NOT NULL DEFAULT '',
    sports                text[]           NOT NULL DEFAULT '{}',
    purchase_date         date,
    initial_distance_m    double precision NOT NULL DEFAULT 0 CHECK (initial_distance_m >= 0),
    initial_moving_time_s double precision NOT NULL DEFAULT 0 CHECK (initial_moving_time_s >= 0),
    notes                 text             NOT NULL DEFAULT '',
    -- an override of the kind's default service limit
    limit_m               double precision CHECK (limit_m > 0),
    -- components only: the bike it is on now
    bike_id               uuid REFERENCES gear (id) ON DELETE SET NULL,
    retired_at            timestamptz,
    wear_distance_m       double precision NOT NULL DEFAULT 0,
    wear_moving_time_s    double precision NOT NULL DEFAULT 0,
    wear_activities       bigint           NOT NULL DEFAULT 0,
    created_at            timestamptz      NOT NULL DEFAULT now(),
    updated_at            timestamptz      NOT NULL DEFAULT now(),
    CHECK ((kind = 'component') = (component_type IS NOT NULL)),
    CHECK (kind = 'component' OR bike_id IS NULL)
);

CREATE INDEX gear_by_owner ON gear (owner_id, id DESC);

-- Which bike a component was on, when: wear follows the component from the date it moved.
-- No foreign key on bike_id: the history outlives a deleted bike.
CREATE TABLE attachments (
    component_id uuid        NOT NULL REFERENCES gear (id) ON DELETE CASCADE,
    bike_id      uuid        NOT NULL,
    attached_at  timestamptz NOT NULL,
    detached_at  timestamptz,
    PRIMARY KEY (component_id, attached_at),
    CHECK (detached_at IS NULL OR detached_at >= attached_at)
);

CREATE INDEX attachments_by_bike ON attachments (bike_id, attached_at);

-- The gear a finished workout of `sport` wears when it names none.
CREATE TABLE default_gear (
    owner_id uuid NOT NULL,
    sport    text NOT NULL,
    gear_id  uuid NOT NULL REFERENCES gear (id) ON DELETE CASCADE,
    PRIMARY KEY (owner_id, sport)
);

-- What inventory knows of finished workouts (from training's events), and the gear each one
-- wore directly (its own or the sport's default at the time).
CREATE TABLE activities (
    activity_id      uuid PRIMARY KEY,
    owner_id         uuid             NOT NULL,
    sport            text             NOT NULL,
    named_gear_id    uuid,
    resolved_gear_id uuid,
    start_time       timestamptz,
    distance_m       double precision NOT NULL,
    moving_time_s    double precision NOT NULL,
    -- deleted workouts are remembered so that late events about them change nothing
    deleted          boolean          NOT NULL DEFAULT false
);

CREATE INDEX activities_by_owner ON activities (owner_id);
CREATE INDEX activities_by_resolved_gear ON activities (resolved_gear_id, start_time);

CREATE TABLE wear_entries (
    gear_id       uuid             NOT NULL REFERENCES gear (id) ON DELETE CASCADE,
    activity_id   uuid             NOT NULL,
    owner_id      uuid             NOT NULL,
    distance_m    double precision NOT NULL,
    moving_time_s double precision NOT NULL,
    start_time    timestamptz      NOT NULL,
    PRIMARY KEY (gear_id, activity_id)
);

CREATE INDEX wear_entries_by_activity ON wear_entries (activity_id);
CREATE INDEX wear_entries_by_gear_start ON wear_entries (gear_id, start_time);

-- One alert per item and threshold (80 and 100 percent), ever: the event is published once.
CREATE TABLE wear_alerts (
    id                uuid PRIMARY KEY,
    gear_id           uuid             NOT NULL REFERENCES gear (id) ON DELETE CASCADE,
    owner_id          uuid             NOT NULL,
    threshold_percent integer          NOT NULL,
    distance_m        double precision NOT NULL,
    limit_m           double precision NOT NULL,
    opened_at         timestamptz      NOT NULL DEFAULT now(),
    closed_at         timestamptz,
    UNIQUE (gear_id, threshold_percent)
);

CREATE INDEX wear_alerts_open_by_owner ON wear_alerts (owner_id, opened_at) WHERE closed_at IS NULL;
