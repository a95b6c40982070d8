-- Carts and wishlists: one row per user and item.
CREATE TABLE cart_items (
    user_id  INTEGER NOT NULL REFERENCES users (id),
    item_id  INTEGER NOT NULL REFERENCES items (id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    added_at TEXT NOT NULL,
    PRIMARY KEY (user_id, item_id)
);

CREATE TABLE wishlist_items (
    user_id  INTEGER NOT NULL REFERENCES users (id),
    item_id  INTEGER NOT NULL REFERENCES items (id),
    added_at TEXT NOT NULL,
    PRIMARY KEY (user_id, item_id)
);
