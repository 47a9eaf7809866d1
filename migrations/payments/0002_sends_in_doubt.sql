-- How many charge requests of a pending payment may have reached the provider: counted up before
-- each is sent, down when its failure shows it never left (breaker open, refused connection, 503).
-- A pending payment with none in doubt was never charged: a refund voids it at once. Pending rows
-- from before this count are taken as sent.
ALTER TABLE payments ADD COLUMN sends_in_doubt integer NOT NULL DEFAULT 0 CHECK (sends_in_doubt >= 0);
UPDATE payments SET sends_in_doubt = 1 WHERE status = 'pending';
