#!/usr/bin/env bash
# Installs Dagster and the Philotes integration (integrations/dagster) into a virtualenv of their
# own, .venv-dagster: Dagster pins grpcio, protobuf, SQLAlchemy and pydantic versions that are not
# the test virtualenv's (.venv), so the two never share one. It installs exactly
# integrations/dagster/requirements.lock (dagster 1.13.29 and everything it pulls in), then the
# integration itself, editable. Idempotent: when the virtualenv already holds what the lock file
# and pyproject.toml say, it does nothing. tests/e2e/test_dagster.py needs it;
# PHILOTES_DAGSTER_VENV puts the virtualenv elsewhere, PYTHON picks the interpreter (3.10+).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${PHILOTES_DAGSTER_VENV:-$root/.venv-dagster}
pkg=$root/integrations/dagster
python=${PYTHON:-python3}

want=$(cat "$pkg/requirements.lock" "$pkg/pyproject.toml" | sha256sum | cut -d' ' -f1)
stamp=$venv/.philotes-dagster
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(<"$stamp")" == "$want" ]]; then
  echo "dagster-env: Dagster ready at $venv"
  exit 0
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "dagster-env: Dagster 1.13 needs Python 3.10 or newer; $python is not (set PYTHON=python3.11)" >&2
  exit 2
fi
# Only a virtualenv is ever emptied and made again, never another directory.
if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" ]] && [[ -n "$(ls -A "$venv")" ]]; then
  echo "dagster-env: $venv exists and is not a virtualenv; move it away or set PHILOTES_DAGSTER_VENV" >&2
  exit 2
fi
echo "dagster-env: installing Dagster (integrations/dagster/requirements.lock) and the integration into $venv"
"$python" -m venv --clear "$venv"
pip=("$venv/bin/pip" --disable-pip-version-check --quiet)
"${pip[@]}" install -r "$pkg/requirements.lock"
"${pip[@]}" install --no-deps --no-build-isolation --editable "$pkg"
"${pip[@]}" check
printf '%s\n' "$want" >"$stamp"
echo "dagster-env: Dagster $("$venv/bin/python" -c 'import dagster; print(dagster.__version__)') ready at $venv"
