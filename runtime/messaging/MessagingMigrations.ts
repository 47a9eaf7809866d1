/**
 * The messaging layer's tables in the schema of each module that publishes or subscribes to
 * events (Module.ts), with their own ledger, `messaging_migrations` (`Migrations.RuntimeSource`):
 *
 * - `outbox`: the events the module published, each written by the transaction that made the
 *   change (Outbox.ts); `published_at` once the broker has it (Relay.ts); purged after
 *   `TESSERA_EVENTS_RETENTION`. `outbox_relay`: the lease of the instance that relays them.
 * - `event_deliveries`: the in-process broker's queue of this module as a subscriber
 *   (InProcessBroker.ts): one row per message still to apply, with its failed attempts.
 * - `inbox`: the id of every message the module applied, written in the transaction that applied
 *   it (Inbox.ts), so that a message delivered again changes nothing; purged after the retention.
 * - `dead_letters`: the messages that failed `TESSERA_EVENTS_MAX_DELIVERIES` times, with the error,
 *   their place in the publisher's outbox (`message_seq`) and when an operator replayed them
 *   (DeadLetters.ts; migration 2).
 * - (3) `outbox_aggregates`: per aggregate the module published events about, the number of its
 *   last event and the number of the last event of each name, from which each outbox row takes
 *   its `aggregate_seq` and `preceding` (Outbox.ts); kept for as long as the module runs, since a
 *   number used twice would break the order. `outbox.traceparent`: the publishing span.
 *   `event_aggregates`: per aggregate of a publisher, the highest `aggregate_seq` this subscriber
 *   applied or dead-lettered; a queued message waits until its `after_seq` is there (or
 *   `TESSERA_EVENTS_ORDER_HOLD` has passed since `queued_at`). Rows written before (3) have no
 *   numbers and wait for nothing, as before.
 *
 * Append; never edit a migration that has shipped.
 */
import type { RuntimeSource } from "../db/Migrations.ts"

export const source: RuntimeSource = {
  name: "messaging",
  ledger: "messaging_migrations",
  migrations: [
    {
      id: 1,
      name: "create_messaging",
      sql: `
CREATE TABLE outbox (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id uuid NOT NULL UNIQUE,
  event text NOT NULL,
  aggregate text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

CREATE TABLE outbox_relay (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  holder text,
  expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO outbox_relay DEFAULT VALUES;

CREATE TABLE event_deliveries (
  position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  message_id uuid PRIMARY KEY,
  publisher text NOT NULL,
  event text NOT NULL,
  aggregate text NOT NULL,
  seq bigint NOT NULL,
  payload jsonb NOT NULL,
  published_at timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  last_error text
);
CREATE INDEX event_deliveries_by_aggregate ON event_deliveries (publisher, aggregate, seq);

CREATE TABLE inbox (
  message_id uuid PRIMARY KEY,
  publisher text NOT NULL,
  event text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX inbox_by_time ON inbox (applied_at);

CREATE TABLE dead_letters (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  message_id uuid NOT NULL,
  publisher text NOT NULL,
  event text NOT NULL,
  aggregate text NOT NULL,
  payload jsonb NOT NULL,
  published_at timestamptz NOT NULL,
  attempts integer NOT NULL,
  error text NOT NULL,
  dead_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
`
    },
    {
      id: 2,
      name: "replay_dead_letters",
      sql: `
ALTER TABLE dead_letters ADD COLUMN message_seq bigint, ADD COLUMN replayed_at timestamptz;
`
    },
    {
      id: 3,
      name: "order_and_trace",
      sql: `
CREATE TABLE outbox_aggregates (
  aggregate text PRIMARY KEY,
  last_seq bigint NOT NULL,
  latest jsonb NOT NULL,
  preceding jsonb NOT NULL
);
ALTER TABLE outbox ADD COLUMN aggregate_seq bigint, ADD COLUMN preceding jsonb, ADD COLUMN traceparent text;

ALTER TABLE event_deliveries ADD COLUMN aggregate_seq bigint, ADD COLUMN after_seq bigint, ADD COLUMN traceparent text,
  ADD COLUMN queued_at timestamptz NOT NULL DEFAULT clock_timestamp();

CREATE TABLE event_aggregates (
  publisher text NOT NULL,
  aggregate text NOT NULL,
  applied_seq bigint NOT NULL,
  PRIMARY KEY (publisher, aggregate)
);
`
    }
  ]
}
