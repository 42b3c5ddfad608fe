-- The points ledger (append-only, the source of truth), balances kept with it, what each
-- activity earned (to correct it on update or delete), and idempotent redemptions.

CREATE TABLE ledger (
    id          uuid PRIMARY KEY,
    user_id     uuid        NOT NULL,
    amount      bigint      NOT NULL,
    reason      text        NOT NULL,
    activity_id uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ledger_by_user ON ledger (user_id, id DESC);

CREATE TABLE balances (
    user_id uuid PRIMARY KEY,
    -- may go below zero when points already spent are taken back by a correction
    balance bigint NOT NULL
);

-- What a finished activity counts for; removed when the activity is deleted.
CREATE TABLE activity_points (
    activity_id     uuid PRIMARY KEY,
    user_id         uuid             NOT NULL,
    sport           text             NOT NULL,
    local_day       date             NOT NULL,
    start_time      timestamptz      NOT NULL,
    distance_m      double precision NOT NULL,
    moving_time_s   double precision NOT NULL,
    elevation_gain_m double precision NOT NULL,
    points          bigint           NOT NULL
);

CREATE INDEX activity_points_by_user_day ON activity_points (user_id, local_day);
CREATE INDEX activity_points_by_start ON activity_points (start_time);

-- Users' time zones (for the local day of the daily cap), from identity's events.
CREATE TABLE user_zones (
    user_id   uuid PRIMARY KEY,
    time_zone text NOT NULL,
    display_name text NOT NULL DEFAULT ''
);

CREATE TABLE redemptions (
    user_id    uuid        NOT NULL,
    key        text        NOT NULL,
    request_hash bytea     NOT NULL,
    ledger_id  uuid        NOT NULL,
    amount     bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- Workouts known to be deleted: an event about them that arrives late changes nothing.
CREATE TABLE deleted_activities (
    activity_id uuid PRIMARY KEY,
    user_id     uuid NOT NULL
);
