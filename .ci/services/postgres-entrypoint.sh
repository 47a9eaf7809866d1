#!/bin/sh
# The official postgres image's start, as far as compose.yaml and testcontainers use it: a new
# data directory is made with POSTGRES_USER as its superuser, whose password is read from
# POSTGRES_PASSWORD_FILE or given as POSTGRES_PASSWORD, and POSTGRES_DB created; then the server
# listens on every address, passwords required over TCP.
set -eu
user="${POSTGRES_USER:-postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  password_file="${POSTGRES_PASSWORD_FILE:-}"
  if [ -z "$password_file" ]; then
    password_file="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}" > "$password_file"
  fi
  initdb --username="$user" --pwfile="$password_file" --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" > /dev/null
  [ -n "${POSTGRES_PASSWORD_FILE:-}" ] || rm -f "$password_file"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "${POSTGRES_DB:-$user}" != postgres ]; then
    echo "CREATE DATABASE \"${POSTGRES_DB:-$user}\"" | postgres --single -D "$PGDATA" postgres > /dev/null
  fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
