-- Email verification codes: one live code per user, sealed like personal data. `generation`
-- grows with every new code, so a mail for a replaced code is not sent.
CREATE TABLE email_codes (
    user_id     BIGINT PRIMARY KEY REFERENCES users (id),
    code        TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    issued_at   TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    consumed_at TIMESTAMPTZ
);
