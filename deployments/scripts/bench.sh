#!/usr/bin/env bash
# Benchmarks (docs/performance.md): builds the release binary, then runs bench.py, which
# starts its own PostgreSQL and reports throughput as a ratio to COPY and pg_recvlogical
# measured in the same run. Arguments go to bench.py (--help lists the sizes).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
bash deployments/scripts/test-env.sh >/dev/null
cargo build --release --locked --bin philotes
exec "$root/.venv/bin/python" deployments/scripts/bench.py "$@"
