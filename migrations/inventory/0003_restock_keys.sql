-- Restocks made with an idempotency key (the `idempotency-key` header): the key, what it restocked
-- and the stock it answered, so that the same request again is answered the same and applied once.
-- Keys are kept for a day (Inventory.ts deletes older ones as new ones arrive): a retry comes
-- within seconds, and a client that reuses a key a day later means a new restock.
CREATE TABLE restock_keys (
  idempotency_key text PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 200),
  product_id      uuid NOT NULL,
  quantity        integer NOT NULL CHECK (quantity > 0),
  available       integer,
  reserved        integer,
  created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX restock_keys_created_at ON restock_keys (created_at);
