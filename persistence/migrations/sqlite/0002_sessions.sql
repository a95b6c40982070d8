-- Refresh tokens (stored as SHA-256 hashes, rotated on use, grouped in families) and the
-- access-token denylist for logout. Timestamps are unix seconds here, compared in SQL.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    family_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);

CREATE TABLE denied_access_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

-- Access tokens of a user issued before this unix second are refused.
ALTER TABLE users ADD COLUMN tokens_valid_after INTEGER;
