#!/usr/bin/env bash
# What one table-wide write lock leaves a second writing process on PostgreSQL, without
# eventkv: pgbench (PostgreSQL's own C client) runs, with 1 and then 2 clients, a
# transaction that inserts 16 rows of 150 bytes and commits, with and without first taking
# a transaction-level advisory lock (what eventkv's PostgreSQL engine takes to keep the
# global log gap-free in commit order). Prints transactions per second per case.
#
# Usage: postgres_lock_bound.sh [SECONDS] (default 5). Connects with PGHOST (default
# 127.0.0.1), PGPORT, PGUSER (default postgres), PGDATABASE (default test). Works in a
# schema of its own, dropped at the end.
set -euo pipefail

seconds=${1:-5}
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGDATABASE=${PGDATABASE:-test}
schema="eventkv_lock_bound_$$"
work=$(mktemp -d)
trap 'psql -qX -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null; rm -rf "$work"' EXIT

psql -qX -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE SCHEMA $schema;
CREATE TABLE $schema.kv (key BYTEA PRIMARY KEY, value BYTEA NOT NULL);
SQL

insert="INSERT INTO $schema.kv (key, value)
  SELECT ('\\x66' || lpad(to_hex(:k::bigint * 16 + g), 16, '0'))::bytea, repeat('y', 150)::bytea
  FROM generate_series(1, 16) g ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;"
printf '%s\n' '\set k random(1, 1000000000)' 'BEGIN;' \
  "SELECT pg_advisory_xact_lock(hashtextextended('eventkv lock bound', 0));" \
  "$insert" 'COMMIT;' >"$work/locked.sql"
printf '%s\n' '\set k random(1, 1000000000)' 'BEGIN;' "$insert" 'COMMIT;' >"$work/unlocked.sql"

for script in locked unlocked; do
  for clients in 1 2; do
    tps=$(pgbench -n -c "$clients" -j "$clients" -T "$seconds" -f "$work/$script.sql" 2>&1 |
      sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    echo "$script, $clients client(s): $tps transactions/s"
  done
done
