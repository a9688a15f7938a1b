"""A sensor that starts downstream jobs when Philotes has committed new data of a table.

Why the watermark: a table's watermark (`lake_lsn` in the API) is the position below which
every change of that table is in Iceberg, and it moves only when data of that table lands — a
worker's commit of its changes, or a copy. Other tables' commits, a quiet source and the
slot's keep-alives leave it where it is. So "the watermark moved" means exactly "there is
something new to read in this table".

The sensor keeps each table's last seen watermark in its cursor (JSON, `"<pipeline id>/<schema.table>"` →
watermark) and asks for one run per table whose watermark differs from it: an unchanged table
asks for nothing, a table that moved asks once. The first evaluation (no cursor) asks for every
table that has data in the lake. Each run carries the table and its watermark as tags, and a
run key made of them, so Dagster never starts two runs for the same move even if a cursor were
lost. Each move is also reported as a materialization of the table's asset, with the API's
numbers as metadata, so Dagster's catalog shows when Philotes last wrote the table.

When the API cannot be read the evaluation fails with the reason (and what to do) and the
cursor stays as it was: nothing is missed, the next evaluation catches up.
"""

import json
from collections.abc import Sequence
from typing import Any

import dagster as dg

from .assets import table_metadata, table_of
from .resource import PhilotesResource

TABLE_TAG = "philotes/table"
PIPELINE_TAG = "philotes/pipeline_id"
WATERMARK_TAG = "philotes/watermark"


def build_philotes_sensor(
    specs: Sequence[dg.AssetSpec],
    *,
    job: Any,
    name: str = "philotes_sensor",
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor asking `job` (a `@job` or a `define_asset_job`) for one run per table of `specs`
    whose watermark moved since its last evaluation. Needs the `philotes` resource. Runs are
    tagged `philotes/table`, `philotes/pipeline_id` and `philotes/watermark`."""
    keys = {table_of(spec): spec.key for spec in specs}

    @dg.sensor(name=name, job=job, minimum_interval_seconds=minimum_interval_seconds,
               default_status=default_status,
               description="Starts a run when Philotes commits new data of a table (its watermark moves).")
    def _sensor(context: dg.SensorEvaluationContext, philotes: PhilotesResource):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        now: dict[str, str] = {}
        runs, events = [], []
        for t in philotes.tables({pipeline for pipeline, _ in keys}):
            key = keys.get((t.pipeline_id, t.name))
            if key is None or t.watermark is None:
                continue
            mark = f"{t.pipeline_id}/{t.name}"
            now[mark] = t.watermark
            if seen.get(mark) == t.watermark:
                continue
            runs.append(dg.RunRequest(
                run_key=f"philotes:{mark}@{t.watermark}",
                tags={TABLE_TAG: t.name, PIPELINE_TAG: str(t.pipeline_id), WATERMARK_TAG: t.watermark},
            ))
            events.append(dg.AssetMaterialization(
                asset_key=key, description=f"Philotes committed `{t.name}` up to {t.watermark}",
                metadata=table_metadata(t)))
        cursor = json.dumps(now, sort_keys=True)
        if not runs:
            return dg.SensorResult(skip_reason="no table's watermark moved", cursor=cursor)
        context.log.info(f"watermark moved: {', '.join(r.tags[TABLE_TAG] for r in runs)}")
        return dg.SensorResult(run_requests=runs, asset_events=events, cursor=cursor)

    return _sensor
