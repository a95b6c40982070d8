-- The payment-deadline sweeper finds unpaid orders past their deadline through this index
-- (one entry per order while it is pending: the partial index stays as small as the
-- unpaid orders), and the shipment timers find orders by status and last change.
CREATE INDEX orders_pending_due ON orders (payment_due_at) WHERE status = 'pending_payment';
CREATE INDEX orders_in_shipment ON orders (status, updated_at)
    WHERE status IN ('paid', 'preparing', 'shipping');
