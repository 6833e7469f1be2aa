-- Keys that may be used once: the `jti` of client assertions and of identity assertions,
-- under a hash, until the assertion expires. A live mark is never evicted: a replay must not
-- get through because the table was full.
CREATE TABLE single_use (
    key TEXT PRIMARY KEY,
    until BIGINT NOT NULL
);
CREATE INDEX single_use_until ON single_use (until);
