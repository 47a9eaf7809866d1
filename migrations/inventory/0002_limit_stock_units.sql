-- A product holds at most 2147483647 units in all (MAX_UNITS in InventoryApi.ts): available and
-- reserved together. Holding moves units from one column to the other and releasing moves them
-- back, so with this bound neither can ever pass the integer range: a reservation that was held
-- can always be released or committed.
--
-- Rows that an earlier restock took past the bound (reachable only by restocking past 2^31 - 1
-- units) could not release their reservations at all; they keep every reserved unit and lose
-- the available units above the bound.
UPDATE stock SET available = 2147483647 - reserved, updated_at = now()
  WHERE available::bigint + reserved > 2147483647;

ALTER TABLE stock ADD CONSTRAINT stock_units_limit CHECK (available::bigint + reserved <= 2147483647);
