-- The revocation feed: every grant that becomes revoked, at a position that only grows
-- (AUTOINCREMENT never hands out a position twice), so that every process on this database
-- refuses its tokens. A trigger writes it in the statement that revokes, whichever statement
-- that is. Entries go with the sweep of grants.
CREATE TABLE grant_revocations (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    grant_id TEXT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX grant_revocations_revoked_at ON grant_revocations (revoked_at);

CREATE TRIGGER grants_revoked AFTER UPDATE OF revoked_at ON grants
WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
BEGIN
    INSERT INTO grant_revocations (grant_id, revoked_at) VALUES (NEW.id, NEW.revoked_at);
END;
