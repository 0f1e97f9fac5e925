"""Property-based requests from each server's OpenAPI schema (schemathesis): no request the
schema allows gets a 5xx, every response has a documented status and matches its documented
schema, the emergency stop is never refused once authenticated (not even for bodies the
schema forbids), and without the bearer token every operation answers 401. The schema
itself is loaded with the token (``/openapi.json`` needs it too)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests._servers_support import AUTH, served_bench


@pytest.fixture(scope="module")
def served():
    with served_bench(speed=0.0) as (ctx, apps):
        yield ctx, apps


@pytest.fixture(scope="module", params=["pumps", "balance", "densimeter", "actions"])
def api(request, served):
    _, apps = served
    # every operation, the shared ones (status, jobs, estop) on every server too: filters set
    # on the schema a fixture returns are not applied by schemathesis.pytest.from_fixture
    return schemathesis.openapi.from_asgi("/openapi.json", apps[request.param], config=CONFIG,
                                          headers=AUTH)


@pytest.fixture(scope="module", params=["pumps", "balance", "densimeter", "actions"])
def estop_api(request, served):
    _, apps = served
    return schemathesis.openapi.from_asgi("/openapi.json", apps[request.param],
                                          config=NEGATIVE, headers=AUTH)


CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})
NEGATIVE = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}},
                                         "generation": {"mode": "all"}})
schema = schemathesis.pytest.from_fixture("api")
estop_schema = schemathesis.pytest.from_fixture("estop_api")


def test_schema_needs_the_token(served):
    _, apps = served
    with pytest.raises(Exception, match="401"):
        schemathesis.openapi.from_asgi("/openapi.json", apps["pumps"], config=CONFIG)


def _is_estop(case) -> bool:
    return case.method.upper() == "POST" and case.path == "/estop"


def _with_token(case) -> None:
    """Replace any Authorization header schemathesis generated (from the bearer security
    scheme, it wins over ``call(headers=...)``) with the right token."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    case.headers = {**headers, **AUTH}


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_for_any_allowed_request(case, served):
    _with_token(case)
    response = case.call()
    assert response.status_code != 401, (case.method, case.path, case.headers)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             response_schema_conformance])
    if _is_estop(case):
        assert response.status_code == 200, (case.body, response.text[:200])
        served[0].bench.reset_estop()


@estop_schema.include(path="/estop", method="POST").parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_estop_never_answers_4xx_once_authenticated(case, served):
    """Positive and negative (schema-violating) bodies, headers and content types alike."""
    ctx, _ = served
    _with_token(case)
    response = case.call()
    assert response.status_code == 200, (case.body, case.headers, response.text[:200])
    assert ctx.bench.estop is not None
    assert not any(p.is_pumping() for p in ctx.bench.pumps.values())
    ctx.bench.reset_estop()


@schema.parametrize()
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
def test_401_without_token(case):
    if case.method.upper() != case.operation.method.upper():
        return  # an undocumented method (405) is not an operation
    response = case.call(headers={"Authorization": "Bearer not-the-token"})
    assert response.status_code == 401, (case.method, case.path, response.text[:200])
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    assert case.call().status_code == 401
