#!/usr/bin/env bash
# The whole platform on this machine, with a sample source already replicating:
#
#   deployments/scripts/setup-local.sh               # the compose stack (deployments/docker/docker-compose.yml)
#   deployments/scripts/setup-local.sh --no-docker [DATA_DIR]
#
# --no-docker runs the same roles as local processes: a PostgreSQL of its own (initdb, as the
# `postgres` user when run as root) holding the sample source `shop` and the control database,
# then `philotes api`, a managed `ingest` and a `worker` (platform.sh). Either way it makes an
# admin user and an API key, adds the source and a pipeline through the API, waits until the
# pipeline's tables are in the lake, and prints every URL. --no-docker stays in the foreground
# until Ctrl-C, then stops everything it started.
#
#   PHILOTES_BIN             the philotes binary (default target/release, then target/debug)
#   PHILOTES_API_LISTEN      where the API listens (default 127.0.0.1:8080)
#   PHILOTES_LOCAL_PG_PORT   the local PostgreSQL's port (default 54329)
#   PHILOTES_ADMIN_PASSWORD  the admin's password (default: made, and kept in DATA_DIR/admin.password)
#   PHILOTES_DASHBOARD_PORT  where --no-docker serves the dashboard when web/ is built (default 3001)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
say() { echo "setup-local: $*"; }
die() { echo "setup-local: $*" >&2; exit 2; }

if [[ "${1:-}" != "--no-docker" ]]; then
  command -v docker >/dev/null || die "no docker here: run 'setup-local.sh --no-docker' for local processes instead"
  dir="$root/deployments/docker"
  [[ -f "$dir/.env" ]] || die "copy deployments/docker/.env.example to deployments/docker/.env and set its secrets first"
  compose=(docker compose -f "$dir/docker-compose.yml" --project-directory "$dir")
  "${compose[@]}" up --detach --build --wait
  # The CLI in the API's container (the image has no shell): users and keys straight in the
  # control database, the rest through the API.
  cli=("${compose[@]}" exec -T philotes-api /usr/local/bin/philotes)
  set -a
  # shellcheck disable=SC1091
  source "$dir/.env"
  set +a
  umask 077
  if [[ ! -s "$dir/.admin.key" ]]; then
    PHILOTES_USER_PASSWORD=$PHILOTES_ADMIN_PASSWORD "${compose[@]}" exec -T -e PHILOTES_USER_PASSWORD philotes-api \
      /usr/local/bin/philotes user create --username admin --role admin
    "${cli[@]}" api-key create --scope admin --name setup-local > "$dir/.admin.key"
  fi
  PHILOTES_API_KEY=$(<"$dir/.admin.key")
  export PHILOTES_API_KEY PHILOTES_API_URL=http://127.0.0.1:8080 PHILOTES_SOURCE_PASSWORD=$REPLICATOR_PASSWORD
  api=("${compose[@]}" exec -T -e PHILOTES_API_KEY -e PHILOTES_API_URL -e PHILOTES_SOURCE_PASSWORD philotes-api /usr/local/bin/philotes)
  if ! "${api[@]}" source list -o json | grep -q '"name": *"shop"'; then
    "${api[@]}" source create --name shop --host source --port 5432 --database shop --user replicator --sslmode disable
    "${api[@]}" pipeline create --name shop --source 1 --tables shop.customers,shop.orders
    "${api[@]}" pipeline start 1
  fi
  cat <<MSG
setup-local: ready.
  Philotes console    http://localhost:3001          (user admin, password PHILOTES_ADMIN_PASSWORD of .env)
  Philotes API        http://localhost:8080/api/v1   (docs: /api/v1/docs; admin key in $dir/.admin.key; user admin, password PHILOTES_ADMIN_PASSWORD of .env)
  Grafana             http://localhost:3000          (admin, GRAFANA_ADMIN_PASSWORD of .env)
  Prometheus          http://localhost:9091          Alertmanager  http://localhost:9093
  Trino               http://localhost:8088          (catalog lake: SELECT * FROM lake.shop.orders__changelog)
  Lakekeeper          http://localhost:8181          S3 (SeaweedFS)  http://localhost:8333 (bucket lake)
  source PostgreSQL   postgres://replicator@localhost:5432/shop
Stop: docker compose -f $dir/docker-compose.yml down (add -v to drop the data)
MSG
  exit 0
fi
shift
data=$(mkdir -p "${1:-$root/philotes-local}" && cd "${1:-$root/philotes-local}" && pwd)
chmod 700 "$data"
bin=${PHILOTES_BIN:-}
if [[ -z "$bin" ]]; then
  if [[ -x "$root/target/release/philotes" ]]; then bin="$root/target/release/philotes"
  elif [[ -x "$root/target/debug/philotes" ]]; then bin="$root/target/debug/philotes"
  else bin=$(command -v philotes || true); fi
fi
[[ -x "$bin" ]] || die "no philotes binary: run cargo build --release first (or set PHILOTES_BIN)"
pgbin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[[ -x "$pgbin/initdb" ]] || die "PostgreSQL is not installed (Debian: apt-get install postgresql-15, or run deployments/scripts/test-env.sh)"
listen=${PHILOTES_API_LISTEN:-127.0.0.1:8080}
port=${PHILOTES_LOCAL_PG_PORT:-54329}

# A PostgreSQL of our own, for the source and the control database. PostgreSQL refuses to run
# as root: then it runs as `postgres`, in a directory that user owns.
as=()
pgdir="$data/postgres"
if [[ $(id -u) -eq 0 ]]; then
  as=(runuser -u postgres --)
  if [[ ! -f "$data/postgres.dir" ]]; then mktemp -d /tmp/philotes-local-pg.XXXXXX > "$data/postgres.dir"; fi
  pgdir=$(<"$data/postgres.dir")
  mkdir -p "$pgdir"
  chown postgres: "$pgdir"
fi
if [[ ! -f "$pgdir/data/PG_VERSION" ]]; then
  say "initdb in $pgdir/data"
  "${as[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
fi
"${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w start \
  -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20" >/dev/null
pids=()
# shellcheck disable=SC2317  # (called by the trap)
stop() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  "${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 || true
}
trap stop EXIT
trap 'exit 0' INT TERM
pg="postgres://postgres@127.0.0.1:$port"
psql=("$pgbin/psql" -X -q -v ON_ERROR_STOP=1)
umask 077
if [[ -z "$("${psql[@]}" -At "$pg/postgres" -c "SELECT 1 FROM pg_database WHERE datname = 'shop'")" ]]; then
  say "the sample source database shop (5,000 orders of 500 customers)"
  "${psql[@]}" "$pg/postgres" -c "CREATE DATABASE shop" -c "CREATE DATABASE philotes"
  "${psql[@]}" "$pg/shop" -f "$root/deployments/docker/local/source-init.sql"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$data/replicator.password"
  "${psql[@]}" "$pg/shop" -c "ALTER ROLE replicator PASSWORD '$(<"$data/replicator.password")'"
fi
ctl="$pg/philotes"

# The platform: api, a managed ingest and a worker (platform.sh makes the encryption key and
# the first admin API key in its directory).
PHILOTES_BIN="$bin" PHILOTES_API_LISTEN="$listen" bash "$root/deployments/scripts/platform.sh" "$ctl" "$data/platform" \
  > "$data/platform.log" 2>&1 &
pids+=($!)
export PHILOTES_API_URL="http://$listen"
for _ in $(seq 1 600); do
  [[ -s "$data/platform/admin.key" ]] && PHILOTES_API_KEY=$(<"$data/platform/admin.key") "$bin" source list >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || die "the platform did not start: $(tail -n 20 "$data/platform.log")"
  sleep 0.2
done
export PHILOTES_API_KEY
PHILOTES_API_KEY=$(<"$data/platform/admin.key")

if [[ ! -s "$data/admin.password" ]]; then
  if [[ -n "${PHILOTES_ADMIN_PASSWORD:-}" ]]; then printf '%s\n' "$PHILOTES_ADMIN_PASSWORD" > "$data/admin.password"
  else head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$data/admin.password"; fi
  PHILOTES_USER_PASSWORD=$(<"$data/admin.password") "$bin" user create --buffer-url "$ctl" --username admin --role admin \
    >/dev/null 2>>"$data/platform.log"
  say "made the admin user 'admin' (password in $data/admin.password)"
fi
if ! "$bin" source list -o json | grep -q '"name": *"shop"'; then
  PHILOTES_SOURCE_PASSWORD=$(<"$data/replicator.password") "$bin" source create --name shop --host 127.0.0.1 \
    --port "$port" --database shop --user replicator --sslmode disable >/dev/null
  "$bin" pipeline create --name shop --source 1 --tables shop.customers,shop.orders >/dev/null
  "$bin" pipeline start 1 >/dev/null
  say "added the source shop and the pipeline shop, started"
fi
# The dashboard, when it is built (cd web && npm ci && npm run build) and Node.js is here.
dashboard="not built: cd web && npm ci && npm run build, then start setup-local.sh again"
server="$root/web/.next/standalone/server.js"
if [[ -f "$server" ]] && command -v node >/dev/null; then
  dash_port=${PHILOTES_DASHBOARD_PORT:-3001}
  (cd "$(dirname "$server")" && PORT=$dash_port HOSTNAME=127.0.0.1 PHILOTES_API_URL="http://$listen" NEXT_TELEMETRY_DISABLED=1 \
    exec node server.js) > "$data/dashboard.log" 2>&1 &
  pids+=($!)
  dashboard="http://127.0.0.1:$dash_port   (user admin)"
fi
lake="$data/platform/pipelines/philotes_shop"
for _ in $(seq 1 900); do
  streaming=$("$bin" pipeline status 1 -o json 2>/dev/null | grep -c '"state": *"streaming"' || true)
  (( streaming >= 2 )) && break
  kill -0 "${pids[0]}" 2>/dev/null || die "the platform stopped: $(tail -n 20 "$data/platform.log")"
  sleep 0.2
done
cat <<MSG
setup-local: ready.
  dashboard           $dashboard
  API                 http://$listen/api/v1        (docs: http://$listen/api/v1/docs, spec: http://$listen/api/v1/openapi.json)
  admin user          admin   (password in $data/admin.password)
  API key             in $data/platform/admin.key
  source PostgreSQL   postgres://replicator@127.0.0.1:$port/shop   (password in $data/replicator.password)
  control database    $ctl
  the lake            $lake   (embedded catalog and warehouse)
Try:
  export PHILOTES_API_URL=http://$listen PHILOTES_API_KEY=\$(cat $data/platform/admin.key)
  $bin pipeline status 1
  psql $pg/shop -c "UPDATE shop.orders SET status = 'paid' WHERE id = 1"
  $bin sql --data-dir $lake "SELECT status, count(*) FROM shop.orders GROUP BY 1"
Ctrl-C stops everything (the data stays in $data).
MSG
wait -n "${pids[@]}"
die "the platform stopped: $(tail -n 20 "$data/platform.log")"
