-- Seller settlement. Each paid order adds a `sale` entry per line (gross, gateway fee), each
-- refund a `reversal` (negative); an entry is dated by the UTC day it was recorded, and never
-- lands in a day already settled (it goes to the next open day). The daily job closes a day
-- per seller into `settlements`; closed days do not change.
CREATE TABLE settlement_entries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL,
    order_id   INTEGER NOT NULL,
    item_id    INTEGER NOT NULL,
    seller_id  INTEGER NOT NULL,
    provider   TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('sale', 'reversal')),
    gross      INTEGER NOT NULL,
    fee        INTEGER NOT NULL,
    day        TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX settlement_entries_by_seller ON settlement_entries (seller_id, day);

CREATE TABLE settlements (
    seller_id   INTEGER NOT NULL,
    day         TEXT NOT NULL,
    gross       INTEGER NOT NULL,
    fee         INTEGER NOT NULL,
    net         INTEGER NOT NULL,
    num_entries INTEGER NOT NULL,
    settled_at  TEXT NOT NULL,
    PRIMARY KEY (seller_id, day)
);
