-- A shipment is created on hold and can only ship once released, when its order is confirmed:
-- 'created' becomes 'on_hold' (from create) and 'ready' (from release). Rows created before this
-- were shippable at once, so they become 'ready', as they were. Runs with search_path set to the
-- shipping schema.
ALTER TABLE shipments DROP CONSTRAINT shipments_status_check;
UPDATE shipments SET status = 'ready' WHERE status = 'created';
ALTER TABLE shipments ADD CONSTRAINT shipments_status_check
  CHECK (status IN ('on_hold', 'ready', 'shipped', 'cancelled'));
