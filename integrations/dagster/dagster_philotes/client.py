"""The few calls the integration makes to `philotes api`, and errors an operator can act on.

Why a client of its own (the standard library's urllib, no HTTP package): the integration only
reads — `GET /api/v1/pipelines` and `GET /api/v1/pipelines/{id}/status` — so it needs a key
with scope `read` and nothing beyond what Dagster already installs. Every failure becomes a
`PhilotesApiError` whose message says what to do: the API not answering (wrong URL, not
running), the key refused (401), a key without the scope (403). The key travels only in the
`Authorization` header; it is never part of a message, a log line or a repr.

What a table is here comes straight from the API's contract (docs/api/openapi.json,
`PipelineStatus.tables[]`): `lake_lsn` is the table's watermark (every change below it is in
Iceberg; it moves only when a worker commits the table's changes or a copy lands),
`last_commit_at` when a worker last committed it, `lag_seconds` the age of its oldest change
not yet in Iceberg (0 when the lake holds everything buffered).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

API_URL_ENV = "PHILOTES_API_URL"
API_KEY_ENV = "PHILOTES_API_KEY"
MAKE_A_KEY = "`philotes api-key create --scope read --name dagster`"


class PhilotesApiError(Exception):
    """The Philotes API could not be asked, or refused; the message says what to do."""


@dataclass(frozen=True)
class PhilotesTable:
    """One source table of one pipeline, as `GET /api/v1/pipelines/{id}/status` shows it."""

    pipeline_id: int
    pipeline: str
    pipeline_state: str  # what the operator asked: running, paused, stopped
    name: str  # `schema.table` on the source
    iceberg_table: str  # `namespace.table` of its changelog table in the lake
    state: str  # waiting, copying, streaming, stopped, needs_copy
    stopped_reason: str | None
    watermark: str | None  # `lake_lsn`: every change below it is in Iceberg
    last_commit_at: str | None
    lag_seconds: float
    buffered_changes: int
    changes_in_lake: int
    rows_copied: int

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]


def iceberg_table(name: str, namespace: str | None) -> str:
    """Where Philotes writes `schema.table` (README, "What lands in Iceberg")."""
    schema, table = name.split(".", 1)
    if namespace:
        return f"{namespace}.{schema}__{table}__changelog"
    return f"{schema}.{table}__changelog"


class PhilotesClient:
    """Reads pipelines and their tables from one Philotes API with one key."""

    def __init__(self, api_url: str, api_key: str, timeout: float = 30.0):
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout

    def __repr__(self) -> str:  # never the key
        return f"PhilotesClient(api_url={self.api_url!r})"

    def get(self, path: str) -> Any:
        """The parsed JSON answer to `GET path`, or a `PhilotesApiError` that says what to do."""
        url = self.api_url + path
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                body = answer.read()
        except urllib.error.HTTPError as e:
            raise self._refused(path, e.code, e.read()) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise PhilotesApiError(
                f"cannot reach the Philotes API at {self.api_url} ({reason}): check that "
                f"`philotes api` is running there and that {API_URL_ENV} (or the resource's "
                f"api_url) is its address, e.g. http://localhost:8080"
            ) from None
        try:
            return json.loads(body)
        except ValueError:
            raise PhilotesApiError(
                f"{url} answered something that is not JSON: is {self.api_url} the address of "
                f"`philotes api` (set {API_URL_ENV} or the resource's api_url)?"
            ) from None

    def _refused(self, path: str, status: int, body: bytes) -> PhilotesApiError:
        try:
            detail = json.loads(body).get("detail") or ""
        except (ValueError, AttributeError):
            detail = ""
        said = f" (the API says: {detail})" if detail else ""
        if status == 401:
            return PhilotesApiError(
                f"the Philotes API at {self.api_url} refused the API key (401){said}: set "
                f"{API_KEY_ENV} (or the resource's api_key) to a valid, unrevoked key; make one "
                f"with {MAKE_A_KEY}"
            )
        if status == 403:
            return PhilotesApiError(
                f"the API key may not read GET {path} (403){said}: the integration needs a key "
                f"with scope `read` or more; make one with {MAKE_A_KEY}"
            )
        if status == 404 and not path.startswith("/api/v1/pipelines/"):
            return PhilotesApiError(
                f"{self.api_url}{path} does not exist (404): is {self.api_url} the address of "
                f"`philotes api` (set {API_URL_ENV} or the resource's api_url)?"
            )
        if status == 503:
            return PhilotesApiError(
                f"the Philotes API at {self.api_url} cannot reach its control database (503)"
                f"{said}: retry once the control database answers"
            )
        return PhilotesApiError(f"the Philotes API answered {status} to GET {path}{said}")

    def pipelines(self) -> list[dict]:
        """Every pipeline the key may see (all pages of `GET /api/v1/pipelines`)."""
        items: list[dict] = []
        after = ""
        while True:
            query = urllib.parse.urlencode({"limit": 500, **({"after": after} if after else {})})
            page = self.get(f"/api/v1/pipelines?{query}")
            items.extend(page["items"])
            after = page.get("next") or ""
            if not after:
                return items

    def status(self, pipeline_id: int) -> dict:
        return self.get(f"/api/v1/pipelines/{int(pipeline_id)}/status")

    def tables(self, pipeline_ids: set[int] | None = None) -> list[PhilotesTable]:
        """Every table of every pipeline (or of `pipeline_ids`), in the order the API lists them.
        A pipeline's tables are those it has seen: a pipeline never started has none yet."""
        out = []
        for p in self.pipelines():
            if pipeline_ids is not None and p["id"] not in pipeline_ids:
                continue
            status = self.status(p["id"])
            for t in status["tables"]:
                out.append(
                    PhilotesTable(
                        pipeline_id=p["id"],
                        pipeline=p["name"],
                        pipeline_state=status["state"],
                        name=t["name"],
                        iceberg_table=iceberg_table(t["name"], p.get("namespace")),
                        state=t["state"],
                        stopped_reason=t.get("stopped_reason"),
                        watermark=t.get("lake_lsn"),
                        last_commit_at=t.get("last_commit_at"),
                        lag_seconds=float(t["lag_seconds"]),
                        buffered_changes=int(t["buffered_changes"]),
                        changes_in_lake=int(t["changes_in_lake"]),
                        rows_copied=int(t["rows_copied"]),
                    )
                )
        return out
