-- Achievements unlocked (never taken back) and challenges with their participants.

CREATE TABLE achievements_unlocked (
    user_id        uuid        NOT NULL,
    achievement_id text        NOT NULL,
    unlocked_at    timestamptz NOT NULL DEFAULT now(),
    activity_id    uuid,
    PRIMARY KEY (user_id, achievement_id)
);

-- Local start hour of each counted workout, for time-of-day achievements.
ALTER TABLE activity_points ADD COLUMN local_hour integer NOT NULL DEFAULT 12;

CREATE TABLE challenges (
    id            uuid PRIMARY KEY,
    name          text             NOT NULL,
    metric        text             NOT NULL CHECK (metric IN ('distance', 'moving_time', 'elevation_gain')),
    sport         text,
    target        double precision NOT NULL CHECK (target > 0),
    starts_at     timestamptz      NOT NULL,
    ends_at       timestamptz      NOT NULL,
    reward_points bigint           NOT NULL DEFAULT 0 CHECK (reward_points >= 0),
    created_at    timestamptz      NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

CREATE TABLE challenge_participants (
    challenge_id uuid        NOT NULL REFERENCES challenges (id) ON DELETE CASCADE,
    user_id      uuid        NOT NULL,
    joined_at    timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (challenge_id, user_id)
);
