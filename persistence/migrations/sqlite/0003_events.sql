-- The event backbone: consumers' inboxes (exactly-once effects), dead letters, and the sales
-- ledger that the ledger consumer writes from order events (the start of seller settlement).

CREATE TABLE inbox (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_by_age ON inbox (processed_at);

CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    aggregate_id INTEGER NOT NULL,
    occurred_at  TEXT NOT NULL,
    payload      TEXT NOT NULL,
    error        TEXT NOT NULL,
    deliveries   INTEGER NOT NULL,
    failed_at    TEXT NOT NULL,
    replayed_at  TEXT
);

CREATE TABLE ledger_entries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL,
    order_id   INTEGER NOT NULL,
    item_id    INTEGER NOT NULL,
    seller_id  INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('sale', 'reversal')),
    quantity   INTEGER NOT NULL,
    amount     INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX ledger_by_order ON ledger_entries (order_id);
CREATE INDEX ledger_by_seller ON ledger_entries (seller_id, created_at);

CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
