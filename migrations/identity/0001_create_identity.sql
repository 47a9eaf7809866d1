-- Identity's tables. Runs with search_path set to the identity schema.

-- Users. E-mail addresses are stored trimmed and lowercased; the index holds that to one
-- account per address whatever the case (PGlite has no citext).
CREATE TABLE users (
  id            uuid PRIMARY KEY,
  email         text NOT NULL,
  name          text NOT NULL,
  password_hash text NOT NULL,
  role          text NOT NULL CHECK (role IN ('customer', 'admin')),
  created_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- API keys of machine clients: only the SHA-256 (hex) of the key is kept.
CREATE TABLE api_keys (
  id         uuid PRIMARY KEY,
  name       text NOT NULL,
  role       text NOT NULL CHECK (role IN ('customer', 'admin')),
  key_hash   text NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE,
  created_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX api_keys_created_at_idx ON api_keys (created_at DESC, id DESC);

-- The keys that sign access tokens. The active one is the newest not retired; retired ones stay
-- published while tokens they signed may still be valid.
CREATE TABLE signing_keys (
  kid         text PRIMARY KEY,
  algorithm   text NOT NULL,
  private_jwk jsonb NOT NULL,
  public_jwk  jsonb NOT NULL,
  created_at  timestamptz NOT NULL,
  retired_at  timestamptz
);
CREATE INDEX signing_keys_active_idx ON signing_keys (created_at DESC) WHERE retired_at IS NULL;
