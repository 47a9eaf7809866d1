-- Stock per product and the reservations that hold it. Runs with search_path set to the inventory schema.
CREATE TABLE stock (
  product_id uuid PRIMARY KEY,
  available  integer NOT NULL DEFAULT 0 CHECK (available >= 0),
  reserved   integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservations (
  reservation_id text PRIMARY KEY,
  status         text NOT NULL CHECK (status IN ('held', 'committed', 'released')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservation_lines (
  reservation_id text NOT NULL REFERENCES reservations ON DELETE CASCADE,
  product_id     uuid NOT NULL,
  quantity       integer NOT NULL CHECK (quantity > 0),
  PRIMARY KEY (reservation_id, product_id)
);
