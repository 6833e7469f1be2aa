-- Secrets only this server uses (the key refresh-token successors are derived with, the pepper
-- of client-secret hashes), one row per name, shared by every replica on this database.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
