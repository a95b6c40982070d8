-- Carts and wishlists: one row per user and item.
CREATE TABLE cart_items (
    user_id  BIGINT NOT NULL REFERENCES users (id),
    item_id  BIGINT NOT NULL REFERENCES items (id),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, item_id)
);

CREATE TABLE wishlist_items (
    user_id  BIGINT NOT NULL REFERENCES users (id),
    item_id  BIGINT NOT NULL REFERENCES items (id),
    added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, item_id)
);
