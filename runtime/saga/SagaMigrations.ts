/**
 * The saga layer's tables in the schema of each module that declares workflows (Module.ts):
 * `sagas` (one row per saga: its state) and `saga_steps` (one row per step and phase: its
 * history), recorded by Saga.ts and read by `Saga.list`. Their ledger is `saga_migrations`,
 * apart from the module's own (`Migrations.RuntimeSource`).
 *
 * The text lives in code rather than in `.sql` files so that every build (the source, the
 * bundle, the single executable, Deno) carries it with no file to find. Append; never edit a
 * migration that has shipped.
 */
import type { RuntimeSource } from "../db/Migrations.ts"

export const source: RuntimeSource = {
  name: "saga",
  ledger: "saga_migrations",
  migrations: [
    {
      id: 1,
      name: "create_sagas",
      sql: `
CREATE TABLE sagas (
  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  execution_id text PRIMARY KEY,
  workflow text NOT NULL,
  subject text,
  state text NOT NULL CHECK (state IN ('running', 'compensating', 'completed', 'compensated', 'stuck')),
  error text,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX sagas_by_state ON sagas (state, seq DESC);

CREATE TABLE saga_steps (
  execution_id text NOT NULL REFERENCES sagas (execution_id) ON DELETE CASCADE,
  step text NOT NULL,
  phase text NOT NULL CHECK (phase IN ('action', 'compensation')),
  status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  error text,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,
  PRIMARY KEY (execution_id, step, phase)
);
`
    }
  ]
}
