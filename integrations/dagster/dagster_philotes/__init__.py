"""Philotes' tables in Dagster: assets with freshness from the Philotes API, and a sensor that
starts downstream jobs when a table's watermark moves.

Everything comes from `philotes api` (a key with scope `read`), so Dagster needs no access to
the source database, the control database or the lake to follow what Philotes writes.
See README.md for an example `Definitions`.
"""
from .assets import (
    FRESHNESS_CHECK,
    asset_key,
    build_philotes_freshness_checks,
    load_philotes_asset_specs,
)
from .client import PhilotesApiError, PhilotesClient, PhilotesTable
from .resource import PhilotesResource
from .sensor import PIPELINE_TAG, TABLE_TAG, WATERMARK_TAG, build_philotes_sensor

__version__ = "0.1.0"

__all__ = [
    "FRESHNESS_CHECK",
    "PIPELINE_TAG",
    "TABLE_TAG",
    "WATERMARK_TAG",
    "PhilotesApiError",
    "PhilotesClient",
    "PhilotesResource",
    "PhilotesTable",
    "asset_key",
    "build_philotes_freshness_checks",
    "build_philotes_sensor",
    "load_philotes_asset_specs",
]
