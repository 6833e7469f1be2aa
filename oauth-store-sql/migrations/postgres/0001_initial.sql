-- The initial schema. Times are unix seconds (BIGINT); codes, refresh tokens and client secrets
-- exist here only as hashes: SHA-256 in 64 lower-case hex digits, or an Argon2id PHC string
-- inside the client record. Migrations are forward-only: change the schema in a new file.

-- Registered clients: the whole record as JSON, plus the columns the store filters and orders
-- on. `last_used_at` is authoritative over the copy inside `data`.
CREATE TABLE clients (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    data TEXT NOT NULL
);
CREATE INDEX clients_created_at ON clients (created_at, seq);
CREATE INDEX clients_unused ON clients (origin, created_at) WHERE last_used_at IS NULL;

-- Authorization requests awaiting sign-in and consent.
CREATE TABLE pending_authorizations (
    id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX pending_authorizations_expires_at ON pending_authorizations (expires_at);

-- Issued authorization codes, under the hash of the code. `redeemed_at` is set exactly once.
CREATE TABLE authorization_codes (
    hash TEXT PRIMARY KEY CHECK (length(hash) = 64),
    client_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    redeemed_at BIGINT,
    data TEXT NOT NULL
);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);

-- Grants: one approved authorization and its refresh-token family. Rotation is a
-- compare-and-swap on (id, generation).
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    resource TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    generation BIGINT NOT NULL CHECK (generation >= 0),
    has_refresh_token BOOLEAN NOT NULL,
    rotated_at BIGINT,
    refresh_expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX grants_client_id ON grants (client_id, created_at);
CREATE INDEX grants_revoked_at ON grants (revoked_at);
CREATE INDEX grants_refresh_expires_at ON grants (refresh_expires_at);
CREATE INDEX grants_created_at ON grants (created_at);

-- Every refresh token of every generation, under its hash; swept with its grant.
CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY CHECK (length(hash) = 64),
    grant_id TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    generation BIGINT NOT NULL CHECK (generation >= 0)
);
CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id);

-- Consent per user and client.
CREATE TABLE consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- Users of the built-in sign-in. Usernames are unique and case-sensitive.
CREATE TABLE users (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled BOOLEAN NOT NULL
);

-- Signing keys, oldest first by `seq`.
CREATE TABLE signing_keys (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    private_der BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

-- Flow events, in the order they were recorded.
CREATE TABLE flow_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at BIGINT NOT NULL,
    step TEXT NOT NULL,
    client_id TEXT,
    user_id TEXT,
    reason TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX flow_events_client_id ON flow_events (client_id, seq);
CREATE INDEX flow_events_occurred_at ON flow_events (occurred_at);
