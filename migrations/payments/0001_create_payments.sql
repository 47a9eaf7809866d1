-- One row per payment (its id chosen by the caller). Runs with search_path set to the payments schema.
-- A payment is 'pending' from before its charge is sent to the provider until its outcome is known:
-- a pending payment may or may not have been charged, and is resolved by asking the provider by
-- its idempotency key (`provider_key`), never by charging under another key.
CREATE TABLE payments (
  payment_id         text PRIMARY KEY CHECK (length(payment_id) BETWEEN 1 AND 128),
  order_id           text NOT NULL,
  customer_id        text NOT NULL,
  status             text NOT NULL CHECK (status IN ('pending', 'charged', 'declined', 'refunded')),
  amount_cents       integer NOT NULL CHECK (amount_cents > 0),
  currency           text NOT NULL,
  provider_key       text NOT NULL,
  provider_charge_id text,
  provider_refund_id text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payments_order_id ON payments (order_id, created_at);
