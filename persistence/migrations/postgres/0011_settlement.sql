-- Seller settlement. Each paid order adds a `sale` entry per line (gross, gateway fee), each
-- refund a `reversal` (negative); an entry is dated by the UTC day it was recorded, and never
-- lands in a day already settled (it goes to the next open day). The daily job closes a day
-- per seller into `settlements`; closed days do not change.
CREATE TABLE settlement_entries (
    id         BIGSERIAL PRIMARY KEY,
    event_id   UUID NOT NULL,
    order_id   BIGINT NOT NULL,
    item_id    BIGINT NOT NULL,
    seller_id  BIGINT NOT NULL,
    provider   TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('sale', 'reversal')),
    gross      BIGINT NOT NULL,
    fee        BIGINT NOT NULL,
    day        TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX settlement_entries_by_seller ON settlement_entries (seller_id, day);

CREATE TABLE settlements (
    seller_id   BIGINT NOT NULL,
    day         TEXT NOT NULL,
    gross       BIGINT NOT NULL,
    fee         BIGINT NOT NULL,
    net         BIGINT NOT NULL,
    num_entries BIGINT NOT NULL,
    settled_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (seller_id, day)
);
