-- The event backbone: consumers' inboxes (exactly-once effects), dead letters, and the sales
-- ledger that the ledger consumer writes from order events (the start of seller settlement).

-- One row per event a consumer has had its effect for, written in the effect's transaction.
CREATE TABLE inbox (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_by_age ON inbox (processed_at);

-- Events a consumer gave up on after its last delivery, with the error; replay re-enqueues.
CREATE TABLE dead_letters (
    id           BIGSERIAL PRIMARY KEY,
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    event_type   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    aggregate_id BIGINT NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    payload      JSON NOT NULL,
    error        TEXT NOT NULL,
    deliveries   INTEGER NOT NULL,
    failed_at    TIMESTAMPTZ NOT NULL,
    replayed_at  TIMESTAMPTZ
);

-- Sales and their reversals per order line, for the sellers' books.
CREATE TABLE ledger_entries (
    id         BIGSERIAL PRIMARY KEY,
    event_id   UUID NOT NULL,
    order_id   BIGINT NOT NULL,
    item_id    BIGINT NOT NULL,
    seller_id  BIGINT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('sale', 'reversal')),
    quantity   BIGINT NOT NULL,
    amount     BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ledger_by_order ON ledger_entries (order_id);
CREATE INDEX ledger_by_seller ON ledger_entries (seller_id, created_at);

-- Published rows are pruned by age.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
