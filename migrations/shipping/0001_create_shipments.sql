-- One shipment per order. Runs with search_path set to the shipping schema.
-- A row without a customer is a cancellation that came before any shipment (the order's saga
-- compensating a create whose answer it never saw): it keeps a late create from making a live one.
CREATE TABLE shipments (
  order_id        text PRIMARY KEY,
  customer_id     text,
  tracking_number text UNIQUE,
  status          text NOT NULL CHECK (status IN ('created', 'shipped', 'cancelled')),
  name            text,
  line1           text,
  city            text,
  postal_code     text,
  country         text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (
    (customer_id IS NOT NULL AND tracking_number IS NOT NULL AND name IS NOT NULL AND line1 IS NOT NULL
      AND city IS NOT NULL AND postal_code IS NOT NULL AND country IS NOT NULL)
    OR (customer_id IS NULL AND tracking_number IS NULL AND status = 'cancelled')
  )
);
