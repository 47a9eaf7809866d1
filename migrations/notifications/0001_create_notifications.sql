-- The messages notifications would send a customer, one per event it was made from (its message
-- id is the key, so an event recorded twice is one row). Runs with search_path set to the
-- notifications schema.
CREATE TABLE notifications (
  id          uuid PRIMARY KEY,
  customer_id text NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('order_confirmed', 'order_cancelled', 'shipment_created')),
  order_id    text NOT NULL,
  subject     text NOT NULL,
  body        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- A customer's notifications, newest first (the listing's keyset order).
CREATE INDEX notifications_customer ON notifications (customer_id, created_at DESC, id DESC);
