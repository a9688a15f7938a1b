-- People who use the dashboard (docs/decisions/013-control-plane-api.md): a password hashed
-- with argon2id, a role, and their sessions (cookies; only a hash of the cookie is kept).
CREATE TABLE philotes.users (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    -- The PHC string of argon2id (`$argon2id$v=19$m=…`): salt and parameters included.
    password_hash text NOT NULL,
    -- viewer (read), operator (operate), admin.
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    disabled_at   timestamptz
);

CREATE TABLE philotes.sessions (
    -- SHA-256 of the session cookie's value.
    id_sha256     bytea PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES philotes.users (id) ON DELETE CASCADE,
    -- Sent back in `X-CSRF-Token` with every cookie-authenticated change.
    csrf_token    text NOT NULL,
    remote        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);

-- Failed logins, for the rate limit (by user name and by address), kept for an hour.
CREATE TABLE philotes.login_failures (
    at            timestamptz NOT NULL DEFAULT now(),
    username      text NOT NULL,
    remote        text
);
CREATE INDEX login_failures_at ON philotes.login_failures (at);
