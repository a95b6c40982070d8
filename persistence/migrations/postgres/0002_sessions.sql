-- Refresh tokens (stored as SHA-256 hashes, rotated on use, grouped in families) and the
-- access-token denylist for logout.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    family_id  TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);

CREATE TABLE denied_access_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Access tokens of a user issued before this instant are refused (deletion, password change).
ALTER TABLE users ADD COLUMN tokens_valid_after TIMESTAMPTZ;
