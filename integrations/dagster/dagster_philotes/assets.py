"""Philotes' tables as Dagster assets, and their freshness as the Philotes API measures it.

Why external assets (`AssetSpec`, no compute function): Philotes writes these tables, all the
time, not Dagster. Dagster cannot materialize them; it can know them, show what is built from
them, and be told when they change (the sensor in `sensor.py` reports every move of a table's
watermark as a materialization). One asset per source table of each pipeline, keyed
`philotes/<pipeline>/<schema>/<table>`, its Iceberg changelog table in the metadata.

Why freshness is an asset check over the API's numbers and not a Dagster `FreshnessPolicy`:
a policy judges by the time of the last materialization, and a table whose source is quiet
gets no commit for hours while being perfectly current. Philotes knows the real thing: the
table's `lag_seconds` (the age of its oldest change not yet in Iceberg; 0 when the lake holds
everything buffered), its state (streaming, copying, stopped by a dead letter) and whether its
pipeline runs at all. The check passes when the pipeline runs, the table streams and its lag
is within `max_lag`, and carries those numbers as they came from the API.

The tables are read from the API when the definitions load (as a dbt manifest is): a table
that joins a pipeline becomes an asset at the next reload of the code location.
"""

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import dagster as dg

from .client import PhilotesTable
from .resource import PhilotesResource

FRESHNESS_CHECK = "philotes_freshness"
PIPELINE_ID = "philotes/pipeline_id"
PIPELINE = "philotes/pipeline"
SOURCE_TABLE = "philotes/source_table"
ICEBERG_TABLE = "philotes/iceberg_table"


def asset_key(table: PhilotesTable, key_prefix: Sequence[str] = ("philotes",)) -> dg.AssetKey:
    return dg.AssetKey([*key_prefix, table.pipeline, table.schema, table.table])


def _group(pipeline: str) -> str:
    return "philotes_" + re.sub(r"[^A-Za-z0-9_]", "_", pipeline)


def load_philotes_asset_specs(
    philotes: PhilotesResource,
    *,
    pipelines: Sequence[str] | None = None,
    key_prefix: Sequence[str] = ("philotes",),
) -> list[dg.AssetSpec]:
    """One `AssetSpec` per table of every pipeline the key may see (or of the named
    `pipelines`), read from the API now. Fails with `PhilotesApiError` saying what to fix when
    the API cannot be read."""
    resolved = philotes.process_config_and_initialize()  # resolves EnvVar("…") outside a run
    specs = []
    for t in resolved.tables():
        if pipelines is not None and t.pipeline not in pipelines:
            continue
        specs.append(
            dg.AssetSpec(
                key=asset_key(t, key_prefix),
                description=f"`{t.name}` replicated by the Philotes pipeline `{t.pipeline}` into the "
                f"Iceberg changelog table `{t.iceberg_table}`.",
                group_name=_group(t.pipeline),
                kinds={"iceberg"},
                metadata={
                    PIPELINE_ID: t.pipeline_id,
                    PIPELINE: t.pipeline,
                    SOURCE_TABLE: t.name,
                    ICEBERG_TABLE: t.iceberg_table,
                },
            )
        )
    return specs


def _value(spec: dg.AssetSpec, key: str) -> Any:
    v = spec.metadata[key]
    return getattr(v, "value", v)


def table_of(spec: dg.AssetSpec) -> tuple[int, str]:
    """(pipeline id, `schema.table`) of an asset made by `load_philotes_asset_specs`."""
    return int(_value(spec, PIPELINE_ID)), str(_value(spec, SOURCE_TABLE))


def table_metadata(t: PhilotesTable) -> dict[str, Any]:
    """The API's numbers for a table, as Dagster metadata."""
    return {
        "philotes/state": t.state,
        "philotes/pipeline_state": t.pipeline_state,
        "philotes/watermark": t.watermark,
        "philotes/last_commit_at": t.last_commit_at,
        "philotes/lag_seconds": dg.MetadataValue.float(t.lag_seconds),
        "philotes/buffered_changes": t.buffered_changes,
        "philotes/changes_in_lake": t.changes_in_lake,
        "philotes/rows_copied": t.rows_copied,
    }


def freshness(key: dg.AssetKey, t: PhilotesTable | None, max_lag: timedelta,
              severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    """The freshness check's verdict on one table, from what the API says of it."""
    def result(passed, description, sev=severity):
        return dg.AssetCheckResult(asset_key=key, check_name=FRESHNESS_CHECK, passed=passed, severity=sev,
                                   description=description, metadata=table_metadata(t) if t else {})

    if t is None:
        return result(False, "the Philotes API no longer lists this table (its pipeline was deleted or the "
                      "table left it): reload the code location", dg.AssetCheckSeverity.ERROR)
    if t.pipeline_state != "running":
        return result(False, f"pipeline `{t.pipeline}` is {t.pipeline_state}: the table does not follow its "
                      f"source (`philotes pipeline start|resume {t.pipeline_id}`)")
    if t.state == "stopped":
        return result(False, f"stopped: {t.stopped_reason}; see `philotes pipeline dead-letters {t.pipeline_id}`",
                      dg.AssetCheckSeverity.ERROR)
    if t.state != "streaming":
        return result(False, f"not streaming ({t.state}): its copy into Iceberg has not finished")
    limit = max_lag.total_seconds()
    if t.lag_seconds > limit:
        return result(False, f"{t.lag_seconds:.1f} s behind its source, more than {limit:g} s")
    return result(True, f"{t.lag_seconds:.1f} s behind its source (at most {limit:g} s)")


def build_philotes_freshness_checks(
    specs: Sequence[dg.AssetSpec],
    *,
    max_lag: timedelta = timedelta(minutes=5),
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
    name: str = "philotes_freshness_checks",
) -> dg.AssetChecksDefinition:
    """One `philotes_freshness` check per asset of `specs`, all answered by one evaluation (the
    pipeline list and one status per pipeline). Needs the `philotes` resource. A stopped table
    or one the API no longer lists fails with ERROR; a lag over `max_lag`, a table still copying
    or a pipeline not running fails with `severity`."""
    tables = {spec.key: table_of(spec) for spec in specs}
    promise = f"Philotes streams the table at most {max_lag.total_seconds():g} s behind its source (the API's lag)."

    @dg.multi_asset_check(
        name=name,
        can_subset=True,
        specs=[
            dg.AssetCheckSpec(FRESHNESS_CHECK, asset=spec.key, description=promise) for spec in specs
        ],
    )
    def _check(context: dg.AssetCheckExecutionContext, philotes: PhilotesResource):
        wanted = sorted({k.asset_key for k in context.selected_asset_check_keys}, key=lambda k: k.path)
        by_table = {(t.pipeline_id, t.name): t
                    for t in philotes.tables({tables[k][0] for k in wanted})}
        for key in wanted:
            yield freshness(key, by_table.get(tables[key]), max_lag, severity)

    return _check
