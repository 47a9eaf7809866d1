-- The sweep that starts a cancel whose saga never started (internal/StartedSagas.ts) walks the
-- orders with a cancel asked for and not yet done, oldest request first.
CREATE INDEX orders_cancel_requested ON orders (updated_at, id) WHERE cancel_requested AND status <> 'CANCELLED';
