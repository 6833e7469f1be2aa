-- The revocation feed: every grant that becomes revoked, at a position that only grows, so
-- that every process on this database refuses its tokens. A trigger writes it in the
-- transaction that revokes, whichever statement that is, and wakes the processes that LISTEN
-- on `oauth_grant_revocations` once that transaction commits. Positions are handed out before
-- commit, so an entry can become visible behind a later one: followers read again what is
-- recent (oauth_core::RevocationFollower). Entries go with the sweep of grants.
CREATE TABLE grant_revocations (
    position BIGSERIAL PRIMARY KEY,
    grant_id TEXT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX grant_revocations_revoked_at ON grant_revocations (revoked_at);

CREATE FUNCTION record_grant_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO grant_revocations (grant_id, revoked_at) VALUES (NEW.id, NEW.revoked_at);
    PERFORM pg_notify('oauth_grant_revocations', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER grants_revoked AFTER UPDATE OF revoked_at ON grants
FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
EXECUTE FUNCTION record_grant_revocation();
