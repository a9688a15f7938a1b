#!/usr/bin/env bash
# The source's init step after source-init.sql: the replication role's password from the
# environment (docker-compose.yml passes REPLICATOR_PASSWORD).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres --dbname shop -v pw="$REPLICATOR_PASSWORD" <<'SQL'
ALTER ROLE replicator PASSWORD :'pw';
SQL
