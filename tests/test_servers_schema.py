"""Property-based requests from each server's OpenAPI schema (schemathesis): no request the
schema allows gets a 5xx, every response has a documented status and matches its documented
schema, and without the bearer token every operation answers 401."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests._servers_support import AUTH, served_bench


@pytest.fixture(scope="module")
def apps():
    with served_bench(speed=0.0) as (_, apps):
        yield apps


@pytest.fixture(scope="module", params=["pumps", "balance", "densimeter", "actions"])
def api(request, apps):
    loaded = schemathesis.openapi.from_asgi("/openapi.json", apps[request.param], config=CONFIG)
    if request.param != "pumps":  # routes every server shares: exercised on one of them
        loaded = loaded.exclude(path_regex=SHARED)
    return loaded


SHARED = r"^/(status|jobs|estop)"
CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_for_any_allowed_request(case):
    response = case.call(headers=AUTH)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             response_schema_conformance])


@schema.parametrize()
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
def test_401_without_token(case):
    if case.method.upper() != case.operation.method.upper():
        return  # an undocumented method (405) is not an operation
    response = case.call(headers={"Authorization": "Bearer not-the-token"})
    assert response.status_code == 401, (case.method, case.path, response.text[:200])
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    assert case.call().status_code == 401
