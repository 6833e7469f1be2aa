-- Upstream sign-in. Links: who a person is at an upstream identity provider (provider id,
-- subject), linked to one user for good; a link is never moved to another user, and goes with
-- its user. Lengths are in bytes, as oauth-core bounds them.
CREATE TABLE upstream_links (
    provider TEXT NOT NULL CHECK (octet_length(provider) BETWEEN 1 AND 64),
    subject TEXT NOT NULL CHECK (octet_length(subject) BETWEEN 1 AND 255),
    user_id TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX upstream_links_user_id ON upstream_links (user_id, linked_at);

-- The vault: per grant, the upstream tokens its sign-in obtained, sealed before they reach the
-- database (nothing here can open them), replaced by compare-and-swap on `version`, with the
-- lease of the one replica refreshing them. A record lives only as long as its grant is live:
-- the grant's revocation deletes it (the trigger below, in the transaction that revokes,
-- whichever statement that is) and so does the grant's sweep (the foreign key). A record is
-- written only while its grant row is share-locked and unrevoked, so that a revocation racing
-- the write waits for it and then deletes what it wrote.
CREATE TABLE upstream_tokens (
    grant_id TEXT PRIMARY KEY REFERENCES grants (id) ON DELETE CASCADE,
    sealed BYTEA NOT NULL CHECK (octet_length(sealed) BETWEEN 1 AND 65536),
    version BIGINT NOT NULL CHECK (version >= 1),
    expires_at BIGINT,
    updated_at BIGINT NOT NULL,
    lease_holder TEXT CHECK (octet_length(lease_holder) BETWEEN 1 AND 128),
    lease_until BIGINT,
    CHECK ((lease_holder IS NULL) = (lease_until IS NULL))
);

CREATE FUNCTION delete_revoked_upstream_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM upstream_tokens WHERE grant_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER grants_revoked_upstream_tokens AFTER UPDATE OF revoked_at ON grants
FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL)
EXECUTE FUNCTION delete_revoked_upstream_tokens();
