-- Payments of orders and the refunds owed on them. A payment is `ready` from its creation
-- until its confirm settles it (`paid` or `failed`); `payment_key` is stored before the
-- gateway is asked to confirm, so a confirm whose answer was lost (a timeout, a crash) is
-- found and looked up at the gateway (reconciliation).
CREATE TABLE payments (
    id              INTEGER PRIMARY KEY,
    order_id        INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    pg_order_id     TEXT NOT NULL UNIQUE,
    provider        TEXT NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    status          TEXT NOT NULL,
    payment_key     TEXT UNIQUE,
    approved_at     TEXT,
    refunded_amount INTEGER NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);
CREATE INDEX payments_in_doubt ON payments (id) WHERE status = 'ready' AND payment_key IS NOT NULL;

-- A refund owed on a paid payment: `pending` until the gateway gave the money back, `done`
-- after. One per reason a payment is refunded (a late payment, a cancel, a return).
CREATE TABLE refunds (
    id          INTEGER PRIMARY KEY,
    payment_id  INTEGER NOT NULL REFERENCES payments (id),
    order_id    INTEGER NOT NULL,
    provider    TEXT NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount > 0),
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (payment_id, reason)
);
CREATE INDEX refunds_pending ON refunds (id) WHERE status = 'pending';

INSERT INTO id_blocks (name, next_id) VALUES ('payments', 1), ('refunds', 1);
