-- Limits every replica shares. Token buckets: the tokens left when last taken from, when
-- (milliseconds since the epoch), the bucket's shape (so that the sweep can tell when it is
-- full again and forgettable), and whether the last take got a token. Sign-in failures per
-- account, under a hash of the account name: the count in a row, the last one, the block
-- they started and whether a replica has reported that block.
CREATE TABLE limit_buckets (
    key TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at_ms BIGINT NOT NULL,
    burst REAL NOT NULL,
    per_second REAL NOT NULL,
    taken INTEGER NOT NULL
);
CREATE INDEX limit_buckets_at ON limit_buckets (at_ms);

CREATE TABLE limit_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure BIGINT NOT NULL,
    blocked_until BIGINT,
    reported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX limit_failures_last ON limit_failures (last_failure);
