-- Orders. Runs with search_path set to the orders schema (the sagas' own tables are the runtime's).
CREATE TABLE orders (
  id               uuid PRIMARY KEY,
  customer_id      text NOT NULL,
  -- Once per customer and key: the same key again answers this order (request_hash must match).
  idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
  request_hash     text NOT NULL,
  status           text NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
  failure_reason   text CHECK (failure_reason IN ('OUT_OF_STOCK', 'PAYMENT_DECLINED', 'PAYMENT_UNAVAILABLE', 'CANCELLED_BY_CUSTOMER')),
  items            jsonb NOT NULL,
  total_cents      bigint NOT NULL CHECK (total_cents > 0),
  currency         char(3) NOT NULL,
  shipping_address jsonb NOT NULL,
  -- The provider's token (the saga charges it; kept so that a saga resumed after a crash has it).
  payment_token    text NOT NULL,
  -- Set by a customer's cancel; the saga reads it before confirming.
  cancel_requested boolean NOT NULL DEFAULT false,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT orders_customer_key UNIQUE (customer_id, idempotency_key),
  CHECK ((status = 'CANCELLED') = (failure_reason IS NOT NULL))
);

-- Keyset paging walks orders newest first, per customer or all of them.
CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);
