-- Accounts, sessions with their refresh tokens, device credentials and token signing keys.

CREATE TABLE users (
    id                 uuid PRIMARY KEY,
    email              text        NOT NULL,
    password_hash      text        NOT NULL,
    display_name       text        NOT NULL,
    avatar_id          uuid,
    units              text        NOT NULL DEFAULT 'metric'
                                   CHECK (units IN ('metric', 'imperial')),
    time_zone          text        NOT NULL DEFAULT 'UTC',
    birth_year         integer,
    weight_kg          double precision,
    max_heart_rate     integer,
    resting_heart_rate integer,
    default_visibility text        NOT NULL DEFAULT 'followers'
                                   CHECK (default_visibility IN ('public', 'followers', 'private')),
    role               text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);

-- A session is one login; its refresh tokens form one family. Sessions outlive a deleted
-- user for a while (no foreign key) so that their revocation stays on record.
CREATE TABLE sessions (
    id                uuid PRIMARY KEY,
    user_id           uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_used_at      timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    revoked_at        timestamptz,
    revoke_reason     text,
    -- false while the revocation still has to be written to the Redis session cache
    revocation_cached boolean     NOT NULL DEFAULT true,
    user_agent        text,
    client_ip         text
);

CREATE INDEX sessions_active_by_user ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_uncached ON sessions (revoked_at) WHERE NOT revocation_cached;

CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE devices (
    id         uuid PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    kind       text        NOT NULL
                           CHECK (kind IN ('watch', 'bike_computer', 'hr_strap', 'phone', 'other')),
    token_hash bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT devices_token_hash_key UNIQUE (token_hash)
);

CREATE INDEX devices_by_user ON devices (user_id) WHERE revoked_at IS NULL;

-- Ed25519 keys that sign access tokens. The newest unretired key signs; every unretired key
-- is published in the JWKS.
CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,
    private_key bytea       NOT NULL,
    public_key  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
