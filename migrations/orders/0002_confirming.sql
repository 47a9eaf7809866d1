-- Set by the saga's confirm step once it has decided to confirm (no cancel asked for), before
-- the stock is committed; the order shows CONFIRMED only after. A cancel asked for after the
-- decision is CancelOrder's to carry out on the confirmed order.
ALTER TABLE orders ADD COLUMN confirming boolean NOT NULL DEFAULT false;
