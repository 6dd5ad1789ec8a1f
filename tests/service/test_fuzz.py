"""schemathesis fuzz of the live service's OpenAPI schema (bounded: a few dozen examples per
operation): no answer is a 500 or breaks the schema, and with a token required no request
without it is accepted."""

from __future__ import annotations

import pytest
import schemathesis

# Imported now, at collection, not lazily by the first from_url inside the test: pytest rewrites
# schemathesis's modules (a pytest plugin's distribution), and CPython 3.11.7 failed to compile them
# there, in a fresh venv, with "AST constructor recursion depth mismatch" (twice in CI).
import schemathesis.specs.openapi.schemas  # noqa: F401
from hypothesis import HealthCheck, given, settings

from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.service.live import Server

pytestmark = pytest.mark.slow
TOKEN = "fuzz-token-0123456789abcdef"
BOUNDED = settings(max_examples=25, deadline=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def guarded(cluster, server):
    """A second service in the same folder that requires a token."""
    address, env, _ = cluster
    guarded = Server(server.folder, env | {"RAYFIT_SERVICE_TOKEN": TOKEN}, address,
                     extra=["--registry", f"sqlite:///{server.folder}/guarded.db"]).start()
    yield guarded
    guarded.stop()


def fuzz(url: str, check) -> int:
    """Run `check(case, response)` on bounded generated requests to every operation of the
    service's schema (schemathesis's cases, hypothesis's search); the number of operations."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @BOUNDED
        def one(case) -> None:
            check(case, case.call(base_url=url))

        one()
    return len(operations)


def test_no_request_gets_a_server_error_or_an_answer_outside_the_schema(server):
    def check(case, response) -> None:
        assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])
        # The answer's status is documented and its body matches its schema. (Not the checks that
        # a schema-valid request must be accepted: a data file that does not exist is refused.)
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 content_type_conformance, response_schema_conformance])

    assert fuzz(server.url, check) == 8


def test_nothing_is_accepted_without_the_token(guarded):
    def check(case, response) -> None:
        assert response.status_code == 401, (case.method, case.formatted_path, response.status_code)

    assert fuzz(guarded.url, check) == 8
