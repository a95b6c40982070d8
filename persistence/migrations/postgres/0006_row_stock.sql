-- The `pg_row` stock strategy of the load-test comparison (`engine.stock_strategy`): one row per
-- drop holding its unsold units, taken with `UPDATE ... WHERE remaining >= q` (the row lock
-- serializes the buyers of one item). Written once per item and process from the drop's units
-- minus those held by orders; unused by the default `actor` strategy.
CREATE TABLE drop_row_stock (
    item_id   BIGINT PRIMARY KEY REFERENCES drops (item_id),
    remaining BIGINT NOT NULL CHECK (remaining >= 0)
);
