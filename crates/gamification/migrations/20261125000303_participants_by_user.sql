-- Every counted workout asks whether its owner is in an open challenge: find a user's open
-- participations without scanning everybody's.
CREATE INDEX challenge_participants_open_by_user
    ON challenge_participants (user_id) WHERE completed_at IS NULL;
