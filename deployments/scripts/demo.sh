#!/usr/bin/env bash
# The live demo on a fresh machine: installs PostgreSQL 15 and the Python reader if missing,
# builds philotes, then replicates a changing database into Iceberg and queries it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
bash deployments/scripts/test-env.sh
echo "demo: building philotes (the first build takes a few minutes)"
cargo build --locked --bin philotes
exec "$root/.venv/bin/python" deployments/scripts/demo.py
