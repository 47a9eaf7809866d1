#!/bin/sh
# The official postgres image's start, as far as compose.yaml uses it: a new data directory is
# made with POSTGRES_USER as its superuser, whose password is read from POSTGRES_PASSWORD_FILE,
# and POSTGRES_DB created; then the server listens on every address, passwords required over TCP.
set -eu
user="${POSTGRES_USER:-postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --username="$user" --pwfile="${POSTGRES_PASSWORD_FILE:?}" --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" > /dev/null
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "${POSTGRES_DB:-$user}" != postgres ]; then
    echo "CREATE DATABASE \"${POSTGRES_DB:-$user}\"" | postgres --single -D "$PGDATA" postgres > /dev/null
  fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
