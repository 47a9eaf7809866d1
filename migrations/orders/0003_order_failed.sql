-- ORDER_FAILED: an order whose saga died on an error it does not expect ends cancelled (its
-- steps undone) instead of staying PENDING. Runs with search_path set to the orders schema.
ALTER TABLE orders DROP CONSTRAINT orders_failure_reason_check;
ALTER TABLE orders ADD CONSTRAINT orders_failure_reason_check CHECK (failure_reason IN
  ('OUT_OF_STOCK', 'PAYMENT_DECLINED', 'PAYMENT_UNAVAILABLE', 'CANCELLED_BY_CUSTOMER', 'ORDER_FAILED'));
