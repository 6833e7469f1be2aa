-- Sign-in sessions on the server, so that they can be ended: sign-out, and removing, disabling
-- or re-passwording a user. The browser's cookie carries a random token; only its SHA-256 hash
-- is stored here. At most a fixed number per user (the oldest are deleted on sign-in); expired
-- ones are swept.
CREATE TABLE sign_in_sessions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    hash TEXT PRIMARY KEY CHECK (length(hash) = 64),
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    credential_version BIGINT NOT NULL CHECK (credential_version >= 0),
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sign_in_sessions_user_id ON sign_in_sessions (user_id, auth_time, seq);
CREATE INDEX sign_in_sessions_expires_at ON sign_in_sessions (expires_at);

-- Bumped at every password change: a session made at an older version is refused.
ALTER TABLE users ADD COLUMN credential_version BIGINT NOT NULL DEFAULT 0 CHECK (credential_version >= 0);
