-- Products: the catalog's only table. Runs with search_path set to the catalog schema.
CREATE TABLE products (
  id          uuid PRIMARY KEY,
  sku         text NOT NULL CONSTRAINT products_sku_key UNIQUE,
  name        text NOT NULL,
  description text NOT NULL DEFAULT '',
  price_cents integer NOT NULL CHECK (price_cents > 0),
  currency    char(3) NOT NULL,
  created_at  timestamptz NOT NULL
);

-- Keyset paging walks products in (created_at, id) order.
CREATE INDEX products_created_at_id_idx ON products (created_at, id);
