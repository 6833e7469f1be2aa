-- The user's grants, newest first: the Connected apps page (GrantStore::user_grants).
CREATE INDEX grants_user_id ON grants (user_id, created_at);
