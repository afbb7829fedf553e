"""Property-based checks of the whole API from its own OpenAPI description.

schemathesis generates requests for every operation of ``/openapi.json``; each
answer must be no server error and must match the schema (status code, content
type, body).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from tests.support.api_server import AUTH, ApiServer, serve
from tests.support.stack import Stack

EXAMPLES_PER_OPERATION = 40
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[ApiServer]:
    server = serve(stack)
    yield server
    server.stop()


def operations(api: ApiServer) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_answers_within_its_schema(api: ApiServer) -> None:
    found = operations(api)
    assert len(found) >= 10

    for operation in found:
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def answers_within_schema(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=api.url, headers=AUTH, checks=CHECKS)

        answers_within_schema()
