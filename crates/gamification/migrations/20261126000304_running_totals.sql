-- A user's running totals per sport and leaderboard period ('all', 'y2026', 'm2026-11',
-- 'w2026-48'; UTC, as the boards), kept with activity_points in the same statement: a
-- counted workout adds its figures to its four periods, a correction moves them, a deletion
-- takes them away. Leaderboards and achievements read these few rows instead of summing a
-- user's whole history for every workout.

CREATE TABLE running_totals (
    user_id          uuid             NOT NULL,
    period           text             NOT NULL,
    sport            text             NOT NULL,
    workouts         bigint           NOT NULL,
    distance_m       double precision NOT NULL,
    moving_time_s    double precision NOT NULL,
    elevation_gain_m double precision NOT NULL,
    points           bigint           NOT NULL,
    PRIMARY KEY (user_id, period, sport)
);

-- A rebuilt board reads one period for every user.
CREATE INDEX running_totals_by_period ON running_totals (period, sport);

-- The totals of workouts counted before this table existed (the period names are those of
-- leaderboards::Period::window).
INSERT INTO running_totals
SELECT user_id, period, sport, count(*), sum(distance_m), sum(moving_time_s),
       sum(elevation_gain_m), sum(points)
FROM activity_points,
     LATERAL (VALUES
         ('all'),
         ('y' || to_char(start_time AT TIME ZONE 'UTC', 'YYYY')),
         ('m' || to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM')),
         ('w' || to_char(start_time AT TIME ZONE 'UTC', 'IYYY-IW'))
     ) AS periods (period)
GROUP BY user_id, period, sport;
