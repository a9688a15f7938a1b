#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs (test-env.sh), checks
# formatting and lints, runs the Rust tests and the Pulumi program's Go tests, then the
# end-to-end tests against a real PostgreSQL read back with pyiceberg. `.ci/run` calls exactly this.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
step() { printf '\n== %s\n' "$*"; }

step "test environment (PostgreSQL, Python virtualenv)"
bash deployments/scripts/test-env.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build (the philotes binary the end-to-end tests run)"
cargo build --workspace --locked

step "cargo test"
cargo test --workspace --locked

step "Pulumi program (deployments/pulumi): go vet, staticcheck, go test with Pulumi's mocks"
(cd deployments/pulumi && go vet ./... && "$(go env GOPATH)/bin/staticcheck" ./... && go test ./...)

step "fuzzing the pgoutput decoder (1 minute; any crash fails the run)"
bash deployments/scripts/fuzz.sh 60

step "tiny benchmark (proves the benchmark runs; asserts nothing about speed)"
"$root/.venv/bin/python" deployments/scripts/bench.py --binary target/debug/philotes \
  --narrow-rows 20000 --wide-rows 2000 --stream-changes 2000 --single-row-changes 100 \
  --latency-seconds 3 --latency-rate 20 --big-txn-rows 20000 --service-big-txn-rows 20000 --flatness-commits 300 \
  --compaction-txns 20 --compaction-txn-rows 500 --json target/bench-tiny.json

step "dashboard (web/): ESLint, strict type check, unit tests, production build"
(cd web && npm run --silent lint && npm run --silent typecheck && npm test --silent && NEXT_TELEMETRY_DISABLED=1 npm run --silent build)

step "end-to-end tests (real PostgreSQL, moto S3, pyiceberg + pyarrow reader, Chromium)"
"$root/.venv/bin/pytest" tests/e2e -q -rA -p no:cacheprovider
