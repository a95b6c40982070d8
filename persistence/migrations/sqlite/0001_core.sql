-- Core tables: settings, users and roles, items and drops, orders, idempotency keys, outbox.
-- Timestamps are RFC 3339 text in UTC, as sqlx encodes chrono values.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE id_blocks (
    name    TEXT PRIMARY KEY,
    next_id INTEGER NOT NULL
);
INSERT INTO id_blocks (name, next_id) VALUES ('orders', 1);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Encrypted (AES-256-GCM, see the API's pii module), like name, phone and address.
    email          TEXT NOT NULL,
    -- HMAC-SHA256 blind index of the normalised email: lookups and uniqueness.
    email_index    TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    name           TEXT NOT NULL,
    phone          TEXT,
    address        TEXT,
    email_verified INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    deleted_at     TEXT
);

CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users (id),
    role    TEXT NOT NULL CHECK (role IN ('customer', 'seller', 'admin')),
    PRIMARY KEY (user_id, role)
);

CREATE TABLE items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    seller_id   INTEGER NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    price       INTEGER NOT NULL CHECK (price >= 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
);

CREATE TABLE drops (
    item_id        INTEGER PRIMARY KEY REFERENCES items (id),
    opens_at       TEXT NOT NULL,
    closes_at      TEXT NOT NULL,
    per_user_limit INTEGER NOT NULL CHECK (per_user_limit >= 1),
    total_units    INTEGER NOT NULL CHECK (total_units >= 0)
);

CREATE TABLE orders (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL,
    status         TEXT NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    payment_due_at TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, id DESC);

CREATE TABLE order_lines (
    order_id   INTEGER NOT NULL,
    line_no    INTEGER NOT NULL,
    item_id    INTEGER NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL CHECK (unit_price >= 0),
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_lines_by_item ON order_lines (item_id);

CREATE TABLE idempotency_keys (
    user_id      INTEGER NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code  INTEGER NOT NULL,
    order_id     INTEGER,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    aggregate_id INTEGER NOT NULL,
    occurred_at  TEXT NOT NULL,
    payload      TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
