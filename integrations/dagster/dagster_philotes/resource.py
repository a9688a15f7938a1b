"""`PhilotesResource`: where the Philotes API is and the key to read it with.

Why both a config field and an environment variable: in Dagster the usual way to hand a secret
to a resource is `api_key=EnvVar("PHILOTES_API_KEY")`, resolved at run time and never stored
in the run's config; leaving `api_key` unset reads the same variable directly (as the
`philotes` CLI does), so `PhilotesResource()` works where `PHILOTES_API_URL` and
`PHILOTES_API_KEY` are set. The field is marked secret (Dagster masks it in its UI) and left
out of the resource's repr.
"""

import os

import dagster as dg
from pydantic import Field

from .client import API_KEY_ENV, API_URL_ENV, MAKE_A_KEY, PhilotesApiError, PhilotesClient, PhilotesTable


class PhilotesResource(dg.ConfigurableResource):
    """A Philotes API (`philotes api`) and a key with scope `read`."""

    api_url: str | None = Field(
        default=None,
        description=f"The API's address, e.g. http://philotes-api:8080; unset: ${API_URL_ENV}.",
    )
    api_key: str | None = Field(
        default=None,
        repr=False,
        description=f"An API key (`phk_…`, scope `read` is enough); unset: ${API_KEY_ENV}. "
        f'Pass it as EnvVar("{API_KEY_ENV}") rather than as text.',
        json_schema_extra={"dagster__is_secret": True},
    )
    timeout_seconds: float = Field(default=30.0, description="How long one request may take.")

    def client(self) -> PhilotesClient:
        url = self.api_url or os.environ.get(API_URL_ENV)
        if not url:
            raise PhilotesApiError(
                f"no Philotes API address: set {API_URL_ENV} or the resource's api_url "
                f"(e.g. http://localhost:8080)"
            )
        key = self.api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise PhilotesApiError(
                f"no Philotes API key: set {API_KEY_ENV} or the resource's api_key "
                f'(api_key=EnvVar("{API_KEY_ENV}")); make one with {MAKE_A_KEY}'
            )
        return PhilotesClient(url, key, self.timeout_seconds)

    def tables(self, pipeline_ids: set[int] | None = None) -> list[PhilotesTable]:
        """Every table of the pipelines the key may see (or of `pipeline_ids`)."""
        return self.client().tables(pipeline_ids)
