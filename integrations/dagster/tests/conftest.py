"""These tests run in Dagster's virtualenv (.venv-dagster) against a live `philotes api`.

tests/e2e/test_dagster.py (in the project's test virtualenv) starts PostgreSQL, the API and
managed ingest/worker roles, makes a source and a pipeline, and runs these tests phase by
phase, handing over what the API said in a JSON file. Nothing here imitates the API.

Environment (set by tests/e2e/test_dagster.py):
  PHILOTES_API_URL, PHILOTES_API_KEY   the live API and a key with scope `read`
  PHILOTES_DAGSTER_STATE               a directory: `expect.json` (what the API said: `pipelines`,
                                       `status` by pipeline id, `moved`, `revoked_key`) and the
                                       sensor's cursor between phases
"""
import json
import os
from pathlib import Path

import pytest


def _need(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: these tests run against a live Philotes API that "
                    f"tests/e2e/test_dagster.py starts (`.venv/bin/pytest tests/e2e/test_dagster.py`)")
    return value


@pytest.fixture
def api_key():
    _need("PHILOTES_API_URL")
    return _need("PHILOTES_API_KEY")


@pytest.fixture
def state():
    return Path(_need("PHILOTES_DAGSTER_STATE"))


@pytest.fixture
def expect(state):
    return json.loads((state / "expect.json").read_text())
