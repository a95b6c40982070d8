-- Core tables: settings, users and roles, items and drops, orders, idempotency keys, outbox.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Blocks of application-assigned ids (orders get their id before the batch that writes them).
CREATE TABLE id_blocks (
    name    TEXT PRIMARY KEY,
    next_id BIGINT NOT NULL
);
INSERT INTO id_blocks (name, next_id) VALUES ('orders', 1);

CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    -- Encrypted (AES-256-GCM, see the API's pii module), like name, phone and address.
    email          TEXT NOT NULL,
    -- HMAC-SHA256 blind index of the normalised email: lookups and uniqueness.
    email_index    TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    name           TEXT NOT NULL,
    phone          TEXT,
    address        TEXT,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL,
    deleted_at     TIMESTAMPTZ
);

CREATE TABLE user_roles (
    user_id BIGINT NOT NULL REFERENCES users (id),
    role    TEXT NOT NULL CHECK (role IN ('customer', 'seller', 'admin')),
    PRIMARY KEY (user_id, role)
);

CREATE TABLE items (
    id          BIGSERIAL PRIMARY KEY,
    seller_id   BIGINT NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    price       BIGINT NOT NULL CHECK (price >= 0),
    -- General items: units on hand. Limited items: the drop's units (the ItemActor holds the live count).
    stock       BIGINT NOT NULL CHECK (stock >= 0),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ
);
CREATE INDEX items_listing ON items (id) WHERE deleted_at IS NULL;

CREATE TABLE drops (
    item_id        BIGINT PRIMARY KEY REFERENCES items (id),
    opens_at       TIMESTAMPTZ NOT NULL,
    closes_at      TIMESTAMPTZ NOT NULL,
    per_user_limit INTEGER NOT NULL CHECK (per_user_limit >= 1),
    total_units    BIGINT NOT NULL CHECK (total_units >= 0),
    CHECK (closes_at > opens_at)
);

CREATE TABLE orders (
    id             BIGINT PRIMARY KEY,
    user_id        BIGINT NOT NULL,
    status         TEXT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount >= 0),
    payment_due_at TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, id DESC);

-- No foreign key to orders: lines are written by the same statement as their order, and the
-- check cost a quarter of the batch insert time.
CREATE TABLE order_lines (
    order_id   BIGINT NOT NULL,
    line_no    INTEGER NOT NULL,
    item_id    BIGINT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    unit_price BIGINT NOT NULL CHECK (unit_price >= 0),
    amount     BIGINT NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_lines_by_item ON order_lines (item_id);

CREATE TABLE idempotency_keys (
    user_id      BIGINT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code  INTEGER NOT NULL,
    order_id     BIGINT,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL,
    event_type   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    aggregate_id BIGINT NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    -- json, not jsonb: stored as sent, relayed as text, never queried inside.
    payload      JSON NOT NULL,
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
