#!/usr/bin/env bash
# The platform on one machine: `philotes api`, `philotes ingest --managed` and
# `philotes worker --managed` over one control database, until Ctrl-C.
#
#   deployments/scripts/platform.sh postgres://philotes@localhost/philotes [DATA_DIR]
#
# Makes (once, in DATA_DIR, readable only by you) the encryption key that seals stored
# passwords and a first admin API key, and prints how to use it with the CLI. The API listens
# on PHILOTES_API_LISTEN (default 127.0.0.1:8080).
set -euo pipefail
ctl=${1:?usage: platform.sh CONTROL_DATABASE_URL [DATA_DIR]}
data=${2:-./philotes-platform}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${PHILOTES_BIN:-}
if [[ -z "$bin" ]]; then
  if [[ -x "$root/target/release/philotes" ]]; then bin="$root/target/release/philotes"
  elif [[ -x "$root/target/debug/philotes" ]]; then bin="$root/target/debug/philotes"
  else bin=$(command -v philotes || true); fi
fi
[[ -x "$bin" ]] || { echo "platform: no philotes binary: run cargo build --release first (or set PHILOTES_BIN)" >&2; exit 2; }
listen=${PHILOTES_API_LISTEN:-127.0.0.1:8080}

mkdir -p "$data"
chmod 700 "$data"
umask 077
if [[ ! -s "$data/encryption.key" ]]; then
  head -c 32 /dev/urandom | base64 > "$data/encryption.key"
  echo "platform: made the encryption key $data/encryption.key (keep it: it opens the stored passwords)"
fi
export PHILOTES_ENCRYPTION_KEY_FILE="$data/encryption.key"
unset PHILOTES_ENCRYPTION_KEY

"$bin" migrate --buffer-url "$ctl"
if [[ ! -s "$data/admin.key" ]]; then
  "$bin" api-key create --buffer-url "$ctl" --scope admin --name platform > "$data/admin.key"
fi

pids=()
# shellcheck disable=SC2317  # (called by the trap)
stop() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
trap stop EXIT
trap 'exit 0' INT TERM
PHILOTES_API_LISTEN="$listen" "$bin" api --buffer-url "$ctl" --metrics-addr off &
pids+=($!)
"$bin" ingest --managed --buffer-url "$ctl" --data-dir "$data/pipelines" --metrics-addr off &
pids+=($!)
"$bin" worker --managed --worker-id "${HOSTNAME:-worker}" --buffer-url "$ctl" --data-dir "$data/pipelines" --metrics-addr off &
pids+=($!)

cat <<MSG
platform: running (api on http://$listen, ingest and a worker). In another terminal:
  export PHILOTES_API_URL=http://$listen PHILOTES_API_KEY=\$(cat $data/admin.key)
  PHILOTES_SOURCE_PASSWORD=… philotes source create --name shop --host db --database shop --user replicator
  philotes pipeline create --name shop --source 1 && philotes pipeline start 1 && philotes pipeline status 1
Tables land in $data/pipelines/<slot>/ (embedded catalog and warehouse) unless a pipeline names its own.
MSG
wait -n "${pids[@]}"
echo "platform: a role stopped; stopping the others" >&2
exit 1
