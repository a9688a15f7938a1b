-- The control plane of `philotes api` (docs/decisions/013-control-plane-api.md): who may call
-- it, the sources it manages, and what every caller changed.

-- API keys for automation. The key itself is shown once, at creation; only its SHA-256 is kept
-- (a key is 32 random bytes: a slow hash buys nothing, a fast one keeps every request cheap).
CREATE TABLE philotes.api_keys (
    -- The public part of the key (`phk_<id>_<secret>`), to find it without scanning.
    id            text PRIMARY KEY,
    name          text NOT NULL,
    -- read < operate < admin.
    scope         text NOT NULL CHECK (scope IN ('read', 'operate', 'admin')),
    secret_sha256 bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    -- Updated at most once a minute per key.
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- PostgreSQL sources. The password is AES-256-GCM encrypted with the API's encryption key
-- (nonce || ciphertext); it is never returned.
CREATE TABLE philotes.sources (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    host          text NOT NULL,
    port          integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    database      text NOT NULL,
    username      text NOT NULL,
    password_enc  bytea,
    sslmode       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every change made through the API: who, what, when, from where. Never holds a secret.
CREATE TABLE philotes.audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    action        text NOT NULL,
    resource      text NOT NULL,
    remote        text,
    detail        jsonb NOT NULL DEFAULT '{}'
);

-- Creates made with an `Idempotency-Key`: the same key and body again get the first answer.
-- Kept for a day.
CREATE TABLE philotes.idempotency_keys (
    actor         text NOT NULL,
    key           text NOT NULL,
    request_sha256 bytea NOT NULL,
    status        integer NOT NULL,
    body          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor, key)
);
