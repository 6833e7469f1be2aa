-- The sweep of unused self-registered clients deletes by the time of last activity: the last
-- use, or the registration when the client was never used. An index on that expression lets
-- the sweep find them without reading the whole table; the partial index it replaces covered
-- only never-used clients, and the sweep's query could not use it.
DROP INDEX clients_unused;
CREATE INDEX clients_last_activity ON clients ((COALESCE(last_used_at, created_at)));
