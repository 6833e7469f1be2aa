-- Upstream sign-in. Links: who a person is at an upstream identity provider (provider id,
-- subject), linked to one user for good; a link is never moved to another user, and goes with
-- its user. Lengths are in bytes, as oauth-core bounds them.
CREATE TABLE upstream_links (
    provider TEXT NOT NULL CHECK (length(CAST(provider AS BLOB)) BETWEEN 1 AND 64),
    subject TEXT NOT NULL CHECK (length(CAST(subject AS BLOB)) BETWEEN 1 AND 255),
    user_id TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX upstream_links_user_id ON upstream_links (user_id, linked_at);

-- The vault: per grant, the upstream tokens its sign-in obtained, sealed before they reach the
-- database (nothing here can open them), replaced by compare-and-swap on `version`, with the
-- lease of the one replica refreshing them. A record lives only as long as its grant is live:
-- the grant's revocation deletes it (the trigger below, in the statement that revokes, whichever
-- statement that is) and so does the grant's sweep (the foreign key).
CREATE TABLE upstream_tokens (
    grant_id TEXT PRIMARY KEY REFERENCES grants (id) ON DELETE CASCADE,
    sealed BLOB NOT NULL CHECK (length(sealed) BETWEEN 1 AND 65536),
    version BIGINT NOT NULL CHECK (version >= 1),
    expires_at BIGINT,
    updated_at BIGINT NOT NULL,
    lease_holder TEXT CHECK (length(CAST(lease_holder AS BLOB)) BETWEEN 1 AND 128),
    lease_until BIGINT,
    CHECK ((lease_holder IS NULL) = (lease_until IS NULL))
);

CREATE TRIGGER grants_revoked_upstream_tokens AFTER UPDATE OF revoked_at ON grants
WHEN NEW.revoked_at IS NOT NULL
BEGIN
    DELETE FROM upstream_tokens WHERE grant_id = NEW.id;
END;
