-- Email verification codes: one live code per user, sealed like personal data. `generation`
-- grows with every new code, so a mail for a replaced code is not sent. Times are unix
-- seconds (compared in SQL).
CREATE TABLE email_codes (
    user_id     INTEGER PRIMARY KEY REFERENCES users (id),
    code        TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    consumed_at INTEGER
);
