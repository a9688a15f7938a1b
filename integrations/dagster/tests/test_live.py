"""dagster_philotes against a live `philotes api`, with Dagster's own test tools: the assets and
their freshness equal what the API says (`materialize` runs the checks), the sensor
(`build_sensor_context`) asks for a run per table with data, then for none while nothing
changes, then for exactly the table whose watermark moved — and that run starts the downstream
job; a paused pipeline fails the check, saying why. A wrong or revoked key, or an API that does
not answer, is an error that says what to do and never shows the key.

Run phase by phase by tests/e2e/test_dagster.py (see conftest.py): first every test up to
`test_an_api_that_does_not_answer_*`; `test_after_rows_arrive_*` once the e2e test has written
rows to one table and seen its watermark move in the API; `test_when_paused_*` once it has
paused the pipeline.
"""
import json
import os
import socket
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from dagster_philotes import (
    FRESHNESS_CHECK,
    TABLE_TAG,
    WATERMARK_TAG,
    PhilotesApiError,
    PhilotesResource,
    build_philotes_freshness_checks,
    build_philotes_sensor,
    load_philotes_asset_specs,
)

RESOURCE = PhilotesResource(api_key=dg.EnvVar("PHILOTES_API_KEY"))  # the URL from PHILOTES_API_URL


def api_tables(expect):
    """(pipeline, table status) for every table the API listed, in its order."""
    return [(p, t) for p in expect["pipelines"] for t in expect["status"][str(p["id"])]["tables"]]


def key_of(p, t):
    schema, table = t["name"].split(".", 1)
    return dg.AssetKey(["philotes", p["name"], schema, table])


def definitions(specs):
    """A code location as a user would write it: the tables, their freshness checks, a job
    downstream of them and the sensor that starts it."""
    @dg.asset(deps=[s.key for s in specs])
    def report(context: dg.AssetExecutionContext) -> str:
        # What a downstream job knows of the move that started it.
        return f"{context.run.tags[TABLE_TAG]}@{context.run.tags[WATERMARK_TAG]}"

    job = dg.define_asset_job("after_philotes", selection=[report])
    return dg.Definitions(
        assets=[*specs, report],
        asset_checks=[build_philotes_freshness_checks(specs, max_lag=timedelta(minutes=5))],
        jobs=[job],
        sensors=[build_philotes_sensor(specs, job=job)],
        resources={"philotes": RESOURCE},
    )


def evaluate(defs, instance, cursor, philotes=RESOURCE):
    """One evaluation of the sensor, as the daemon would make it."""
    (sensor,) = defs.sensors
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"philotes": philotes})
    return sensor(context)


def test_assets_are_the_tables_the_api_lists(api_key, expect):
    specs = load_philotes_asset_specs(RESOURCE)
    assert [s.key for s in specs] == [key_of(p, t) for p, t in api_tables(expect)]
    for spec, (p, t) in zip(specs, api_tables(expect), strict=True):
        schema, table = t["name"].split(".", 1)
        assert spec.group_name == f"philotes_{p['name']}"
        assert spec.metadata == {"philotes/pipeline_id": p["id"], "philotes/pipeline": p["name"],
                                 "philotes/source_table": t["name"],
                                 "philotes/iceberg_table": f"{schema}.{table}__changelog"}
    # Only the named pipelines; and everything loads as one code location.
    assert load_philotes_asset_specs(RESOURCE, pipelines=["no-such-pipeline"]) == []
    dg.Definitions.validate_loadable(definitions(specs))


def test_the_readme_example_loads_against_the_api(api_key, expect):
    """The `Definitions` of README.md, as written, against the live API (it has a table
    `public.orders`): it loads, and its sensor and check cover what it says."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    defs = scope["defs"]
    dg.Definitions.validate_loadable(defs)
    (p,) = expect["pipelines"]
    assert [s.key for s in scope["tables"]] == [key_of(p, t) for _, t in api_tables(expect)]
    assert scope["orders"].key == dg.AssetKey(["philotes", p["name"], "public", "orders"])
    with dg.instance_for_test() as instance:
        first = evaluate(defs, instance, None)
    assert [r.tags[TABLE_TAG] for r in first.run_requests] == ["public.orders"]


def test_freshness_is_what_the_api_says(api_key, expect, capfd):
    specs = load_philotes_asset_specs(RESOURCE)
    defs = definitions(specs)
    result = dg.materialize([*specs, *defs.asset_checks], resources={"philotes": RESOURCE},
                            selection=dg.AssetSelection.all_asset_checks())
    assert result.success
    evaluations = {e.asset_key: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {s.key for s in specs}
    for p, t in api_tables(expect):
        e = evaluations[key_of(p, t)]
        got = {k: v.value for k, v in e.metadata.items()}
        assert e.check_name == FRESHNESS_CHECK
        # Every table streams with nothing waiting, so each one is fresh, with the API's numbers.
        assert t["state"] == "streaming" and t["lag_seconds"] <= 300, t
        assert e.passed, (e.description, got)
        assert got == {
            "philotes/state": t["state"], "philotes/pipeline_state": p["state"],
            "philotes/watermark": t["lake_lsn"], "philotes/last_commit_at": t["last_commit_at"],
            "philotes/lag_seconds": t["lag_seconds"], "philotes/buffered_changes": t["buffered_changes"],
            "philotes/changes_in_lake": t["changes_in_lake"], "philotes/rows_copied": t["rows_copied"],
        }, (got, t)
    assert api_key not in capfd.readouterr().err


def test_the_sensor_asks_once_per_move_and_never_for_an_unchanged_table(api_key, expect, state, capfd):
    specs = load_philotes_asset_specs(RESOURCE)
    defs = definitions(specs)
    with dg.instance_for_test() as instance:
        first = evaluate(defs, instance, None)
        second = evaluate(defs, instance, first.cursor)
    # First evaluation: one run per table that has data in the lake, tagged with its watermark.
    with_data = [(p, t) for p, t in api_tables(expect) if t["lake_lsn"]]
    assert with_data and len(with_data) == len(api_tables(expect))
    assert [(r.tags[TABLE_TAG], r.tags[WATERMARK_TAG]) for r in first.run_requests] == \
        [(t["name"], t["lake_lsn"]) for _, t in with_data]
    assert len({r.run_key for r in first.run_requests}) == len(with_data)
    assert [e.asset_key for e in first.asset_events] == [key_of(p, t) for p, t in with_data]
    assert json.loads(first.cursor) == {f"{p['id']}/{t['name']}": t["lake_lsn"] for p, t in with_data}
    # Second, nothing new: no run, the same cursor.
    assert second.run_requests == [] and second.asset_events == [], second
    assert second.skip_reason and json.loads(second.cursor) == json.loads(first.cursor)
    (state / "cursor").write_text(second.cursor)
    assert api_key not in capfd.readouterr().err


def test_a_wrong_or_revoked_key_says_what_to_do_and_never_shows_the_key(api_key, expect, capfd):
    assert PhilotesResource.to_config_schema().as_field().config_type.fields["api_key"].is_secret
    defs = definitions(load_philotes_asset_specs(RESOURCE))
    for wrong in ("phk_000000000000_" + "x" * 43, expect["revoked_key"]):
        philotes = PhilotesResource(api_key=wrong)
        assert wrong not in repr(philotes)
        with pytest.raises(PhilotesApiError) as e:
            load_philotes_asset_specs(philotes)
        message = str(e.value)
        assert "refused the API key (401)" in message and "PHILOTES_API_KEY" in message, message
        assert "philotes api-key create" in message and os.environ["PHILOTES_API_URL"] in message, message
        assert wrong not in message
        # The sensor fails its evaluation with the same words (and so keeps its cursor).
        with dg.instance_for_test() as instance, pytest.raises(PhilotesApiError, match=r"refused the API key \(401\)"):
            evaluate(defs, instance, None, philotes)
    out = capfd.readouterr()
    assert "x" * 43 not in out.out + out.err and expect["revoked_key"] not in out.out + out.err


def test_an_api_that_does_not_answer_says_what_to_do(api_key, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PhilotesApiError) as e:
        load_philotes_asset_specs(PhilotesResource(api_url=f"http://127.0.0.1:{port}", api_key=api_key))
    message = str(e.value)
    assert f"cannot reach the Philotes API at http://127.0.0.1:{port}" in message, message
    assert "`philotes api` is running" in message and "PHILOTES_API_URL" in message and api_key not in message
    # No key at all, before any request.
    monkeypatch.delenv("PHILOTES_API_KEY")
    with pytest.raises(PhilotesApiError, match="no Philotes API key: set PHILOTES_API_KEY"):
        load_philotes_asset_specs(PhilotesResource())


def test_after_rows_arrive_the_sensor_asks_for_exactly_the_moved_table(api_key, expect, state):
    specs = load_philotes_asset_specs(RESOURCE)
    defs = definitions(specs)
    before = json.loads((state / "cursor").read_text())
    with dg.instance_for_test() as instance:
        third = evaluate(defs, instance, (state / "cursor").read_text())
        # The run request starts the downstream job, which knows which table moved and where to.
        (run,) = third.run_requests
        result = defs.resolve_job_def(run.job_name or "after_philotes").execute_in_process(
            instance=instance, tags=run.tags, resources={"philotes": RESOURCE})
        # Evaluated again: nothing more.
        fourth = evaluate(defs, instance, third.cursor)
    (moved,) = expect["moved"]
    (p, t) = next((p, t) for p, t in api_tables(expect) if t["name"] == moved)
    assert before[f"{p['id']}/{moved}"] != t["lake_lsn"]
    assert (run.tags[TABLE_TAG], run.tags[WATERMARK_TAG]) == (moved, t["lake_lsn"])
    (event,) = third.asset_events
    assert event.asset_key == key_of(p, t)
    assert event.metadata["philotes/watermark"].value == t["lake_lsn"]
    assert event.metadata["philotes/last_commit_at"].value == t["last_commit_at"]
    assert json.loads(third.cursor) == {**before, f"{p['id']}/{moved}": t["lake_lsn"]}
    assert result.success and result.output_for_node("report") == f"{moved}@{t['lake_lsn']}"
    assert fourth.run_requests == [] and fourth.cursor == third.cursor


def test_when_paused_the_freshness_check_fails_and_says_why(api_key, expect):
    """Run after the e2e test paused the pipeline: a paused pipeline's lag stays 0 while its
    source moves on, so the check fails on the pipeline's state, with what to do."""
    specs = load_philotes_asset_specs(RESOURCE)
    result = dg.materialize([*specs, *definitions(specs).asset_checks], resources={"philotes": RESOURCE},
                            selection=dg.AssetSelection.all_asset_checks())
    assert result.success  # a failed check is a verdict, not a failed run
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(api_tables(expect)) and {p["state"] for p in expect["pipelines"]} == {"paused"}
    for e in evaluations:
        assert not e.passed and e.severity == dg.AssetCheckSeverity.WARN, e
        assert "is paused" in e.description and "philotes pipeline start|resume" in e.description, e.description
        assert e.metadata["philotes/pipeline_state"].value == "paused"
