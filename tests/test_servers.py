"""The HTTP servers in process (FastAPI TestClient) on a simulated bench on virtual time:
auth, error mapping, jobs, busy, cancellation and the emergency stop."""

from __future__ import annotations

import json
import re
import time

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asab.actions.bench import EmergencyStopped, OperationCancelled
from asab.config.models import ServerSettings
from asab.errors import (
    ConfigError, DeviceBusy, DeviceError, DeviceFault, NotMakeableError, RequestError,
    TransportError, TransportTimeout,
)
from asab.servers.common import ESTOP_DEFAULT_REASON
from asab.servers.errors import status_of
from asab.servers.run import resolve_token
from tests._servers_support import AUTH, MAKEABLE, NOT_MAKEABLE, TOKEN, served_bench


@pytest.fixture(scope="module")
def served():
    with served_bench(speed=0.0) as (ctx, apps):
        yield ctx, {name: TestClient(app, headers=AUTH) for name, app in apps.items()}


def wait_job(client: TestClient, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


@pytest.mark.parametrize(("exc", "code"), [
    (RequestError("bad"), 422),
    (NotMakeableError({"EC": 1.0}, {"EC": 0.5}, 0.5), 422),
    (DeviceBusy("pumps", "busy"), 409),
    (EmergencyStopped("test"), 409),
    (OperationCancelled("x"), 409),
    (DeviceError("A0.0", "volume out of range"), 409),
    (DeviceFault("A0.0", "drive fault"), 502),
    (TransportError("bus", "closed"), 502),
    (TransportTimeout("balance", "no answer"), 504),
    (ValueError("a bug"), 500),
])
def test_error_mapping(exc, code):
    assert status_of(exc) == code


def test_token_is_required_and_never_empty():
    with pytest.raises(ConfigError):
        resolve_token(ServerSettings(), environ={})
    with pytest.raises(ConfigError):
        resolve_token(ServerSettings(), environ={"ASAB_SERVER_TOKEN": "short"})
    assert resolve_token(ServerSettings(), environ={"ASAB_SERVER_TOKEN": "x" * 12}) == "x" * 12
    settings = ServerSettings(token="from-config-123")
    assert resolve_token(settings, environ={"ASAB_SERVER_TOKEN": "x" * 12}) == "from-config-123"
    assert "from-config-123" not in repr(settings)


def test_every_route_needs_the_token(served):
    _, clients = served
    for name, client in clients.items():
        paths = client.get("/openapi.json").json()["paths"]
        assert len(paths) >= 7
        for template, methods in paths.items():
            path = template.replace("{name}", "A0.0").replace("{job_id}", "x")
            for method in methods:
                for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token"}):
                    r = client.request(method, path, headers=headers)
                    assert r.status_code == 401, (name, method, path, r.status_code)
                r = client.request(method, path, params={"token": TOKEN},
                                   headers={"Authorization": ""})
                assert r.status_code == 401, ("?token= outside the docs", name, method, path)


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect",
                                  "/docs/assets/swagger-ui-bundle.js", "/docs/assets/nope.js"])
def test_docs_need_the_token_as_header_or_query(served, path):
    _, clients = served
    for name, client in clients.items():
        no = {"Authorization": ""}
        for params in ({}, {"token": "wrong-token-0000"}, {"token": ""}):
            r = client.get(path, params=params, headers=no)
            assert r.status_code == 401, (name, path, params, r.status_code)
        if path in ("/docs/oauth2-redirect", "/docs/assets/nope.js"):  # not served at all
            assert client.get(path).status_code == 404
            continue
        assert client.get(path).status_code == 200
        page = client.get(path, params={"token": TOKEN}, headers=no)
        assert page.status_code == 200, (name, path)
        if path in ("/docs", "/redoc"):  # the page loads the description with the same token
            assert f"/openapi.json?token={TOKEN}" in page.text
            assert page.headers["referrer-policy"] == "no-referrer"
            assert page.headers["cache-control"] == "no-store"
            spec = client.get("/openapi.json", params={"token": TOKEN}, headers=no).json()
            assert spec["info"]["title"] == f"asab {name} server"


REFERENCE = re.compile(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)["']""", re.IGNORECASE)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_work_offline(served, page):
    """The pages reference only the server itself, and every asset they load is served
    (with the token the page was opened with) — a glovebox PC without internet sees them."""
    _, clients = served
    client = clients["actions"]
    no = {"Authorization": ""}
    html = client.get(page, params={"token": TOKEN}, headers=no).text
    assert "://" not in html.replace("http://www.w3.org", ""), html
    assert "fonts.googleapis" not in html and "cdn" not in html.lower()
    refs = REFERENCE.findall(html)
    assets = [r for r in refs if r.startswith("/docs/assets/")]
    assert len(assets) >= 2, refs
    for ref in refs:
        assert ref.startswith("/"), ref
    for ref in assets:
        path, _, query = ref.partition("?")
        assert query == f"token={TOKEN}", ref
        r = client.get(path, params={"token": TOKEN}, headers=no)
        assert r.status_code == 200 and len(r.content) > 1000, (ref, r.status_code)
    if page == "/docs":
        assert '"validatorUrl": null' in html  # no call to the public validator service


def test_status_and_reads(served):
    _, c = served
    status = c["pumps"].get("/status").json()
    assert status["server"] == "pumps" and status["estop"] is None
    pumps = c["pumps"].get("/pumps").json()
    assert {p["name"] for p in pumps} >= {"A0.0", "F0.0"}
    assert c["pumps"].get("/pumps/nope").status_code == 404
    assert c["pumps"].get("/valves/V1").json()["position_count"] == 10
    assert c["balance"].get("/balance/reading").json()["unit"] == "g"
    assert c["densimeter"].get("/densimeter").json()["temperature"] == pytest.approx(298.15)


def test_formulate_and_not_makeable(served):
    _, c = served
    ok = c["actions"].post("/formulate", json={"composition": MAKEABLE, "volume": 2.0})
    assert ok.status_code == 200
    assert ok.json()["achieved"]["EC"] == pytest.approx(0.29, abs=1e-9)
    assert sum(ok.json()["stock_volumes"].values()) == pytest.approx(2.0)
    bad = c["actions"].post("/formulate", json={"composition": NOT_MAKEABLE})
    assert bad.status_code == 422
    err = bad.json()["error"]
    assert err["type"] == "NotMakeableError" and set(err["closest"]) == {"LiPF6", "EC", "EMC"}
    assert c["actions"].post("/deliver", json={"composition": NOT_MAKEABLE}).status_code == 422
    unknown = c["actions"].post("/formulate", json={"composition": {"H2O": 1.0}})
    assert unknown.status_code == 422 and unknown.json()["error"]["type"] == "RequestError"
    extra = c["actions"].post("/formulate", json={"composition": MAKEABLE, "oops": 1})
    assert extra.status_code == 422


def test_deliver_measure_drain_clean(served):
    ctx, c = served
    a = c["actions"]
    job = a.post("/deliver", json={"composition": MAKEABLE})
    assert job.status_code == 202
    busy = a.post("/clean")
    if busy.status_code != 202:  # the deliver job may not have finished yet
        assert busy.status_code == 409 and busy.json()["error"]["type"] == "DeviceBusy"
    done = wait_job(a, job.json()["id"])
    assert done["state"] == "succeeded", done["error"]
    assert done["progress"] == 1.0
    assert [p["purpose"] for p in done["result"]["pushes"]][1].startswith("sample through")
    measured = wait_job(a, a.post("/measure", json={"sample": "srv_1"}).json()["id"])
    assert measured["state"] == "succeeded", measured["error"]
    assert measured["result"]["density"]["mean"] == pytest.approx(1.16, abs=0.05)
    drained = wait_job(a, a.post("/drain", json={}).json()["id"])
    assert drained["state"] == "succeeded" and drained["result"]["mass"] > 0
    cleaned = wait_job(a, a.post("/clean").json()["id"])
    assert cleaned["state"] == "succeeded", cleaned["error"]
    assert ctx.jobs.busy() == {}


def test_busy_device_answers_409(served):
    ctx, c = served
    with ctx.jobs.claim(("balance",)):
        r = c["balance"].post("/balance/tare")
        assert r.status_code == 409 and r.json()["error"]["device"] == "balance"
    assert c["balance"].post("/balance/tare").status_code == 200


def test_emergency_stop_latches_until_reset(served):
    _, c = served
    r = c["pumps"].post("/estop", json={"reason": "test"})
    assert r.status_code == 200 and r.json()["estop"] == "test"
    assert not any(p["pumping"] for p in c["pumps"].get("/pumps").json())
    for client, path, body in ((c["actions"], "/prime", {}),
                               (c["pumps"], "/pumps/F0.0/aspirate",
                                {"source": "Solvent", "volume": 0.1}),
                               (c["pumps"], "/valves/V1/position", {"position": 1})):
        refused = client.post(path, json=body)
        assert refused.status_code == 409, (path, refused.json())
        assert refused.json()["error"]["type"] == "EmergencyStopped"
    assert c["actions"].get("/status").json()["estop"] == "test"
    assert c["balance"].post("/estop/reset").json()["estop"] is None
    assert c["pumps"].post("/valves/V1/position", json={"position": 1}).json()["position"] == 1


ODD_ESTOP_BODIES = [
    (b'{"reason": "valve leak"', "application/json"),          # malformed JSON
    (b'{"reason": "leak", "oops": 1}', "application/json"),     # unknown field
    (json.dumps({"reason": "x" * 201}).encode(), "application/json"),  # too long
    (json.dumps({"reason": "leak\u0007now"}).encode(), "application/json"),  # control char
    (json.dumps({"reason": ""}).encode(), "application/json"),
    (b"null", "application/json"), (b"[1, 2]", "application/json"),
    (b"\xff\xfe\x00", "application/octet-stream"), (b"[" * 3000, "application/json"),
    (b"[" * 5000, "application/json"),
    (b" " * 10_000, "text/plain"),
]


@pytest.mark.parametrize(("body", "content_type"), ODD_ESTOP_BODIES)
def test_estop_stops_whatever_the_body(served, body, content_type):
    """A body the e-stop cannot use costs only its reason: every server stops and latches."""
    ctx, clients = served
    for name, client in clients.items():
        r = client.post("/estop", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 200, (name, r.status_code, r.text[:200])
        assert r.json()["estop"] == ESTOP_DEFAULT_REASON and r.json()["reason_ignored"]
        assert ctx.bench.estop == ESTOP_DEFAULT_REASON
        assert not any(p["pumping"] for p in clients["pumps"].get("/pumps").json())
        assert client.post("/estop/reset").json()["estop"] is None


def test_estop_reason_used_when_valid_and_default_without_body(served):
    ctx, c = served
    r = c["densimeter"].post("/estop", json={"reason": "smoke in fume hood"}).json()
    assert r["estop"] == ctx.bench.estop == "smoke in fume hood" and r["reason_ignored"] is None
    c["densimeter"].post("/estop/reset")
    r = c["balance"].post("/estop").json()
    assert r["estop"] == ESTOP_DEFAULT_REASON and r["reason_ignored"] is None
    c["balance"].post("/estop/reset")


@given(body=st.binary(max_size=300) | st.builds(
    lambda v: json.dumps(v).encode(), st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=250),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
            st.sampled_from(["reason", "x", "Reason"]) | st.text(max_size=5), kids, max_size=3),
        max_leaves=8)))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_estop_never_refused_property(served, body):
    ctx, clients = served
    r = clients["actions"].post("/estop", content=body,
                                headers={"Content-Type": "application/json"})
    assert r.status_code == 200, (body[:80], r.text[:200])
    assert ctx.bench.estop is not None and r.json()["estop"] == ctx.bench.estop
    ctx.bench.reset_estop()


def test_malformed_json_is_400_not_422(served):
    _, c = served
    bad = c["actions"].post("/formulate", content=b'{"composition": ',
                            headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "MalformedBody"
    untyped = c["actions"].post("/formulate", content=b"composition=EC",
                                headers={"Content-Type": "text/plain"})
    assert untyped.status_code == 422
    assert c["pumps"].post("/valves/V1/position", content=b"{1}",
                           headers={"Content-Type": "application/json"}).status_code == 400


def test_unknown_job_is_404(served):
    _, c = served
    assert c["actions"].get("/jobs/nope").status_code == 404
    assert c["actions"].post("/jobs/nope/cancel").status_code == 404


def test_cancel_stops_the_pumps_mid_move():
    """On a real-time clock (×20) a cancelled aspiration stops part-way; so does one
    interrupted by the emergency stop."""
    with served_bench(speed=20.0) as (ctx, apps):
        c = TestClient(apps["pumps"], headers=AUTH)
        before = c.get("/pumps/F0.0").json()["fill_level"]
        job = c.post("/pumps/F0.0/aspirate", json={"source": "Solvent", "volume": 3.0,
                                                   "flow": 0.01}).json()
        deadline = time.monotonic() + 30
        while c.get("/pumps/F0.0").json()["fill_level"] <= before + 0.01:
            assert time.monotonic() < deadline, c.get(f"/jobs/{job['id']}").json()
            time.sleep(0.02)
        assert c.post("/pumps/F0.0/dispense", json={"target": "waste_1"}).status_code == 409
        cancelled = c.post(f"/jobs/{job['id']}/cancel").json()
        assert cancelled["cancel_requested"]
        done = wait_job(c, job["id"], timeout=10)
        assert done["state"] == "cancelled"
        assert done["error"]["type"] == "OperationCancelled"
        state = c.get("/pumps/F0.0").json()
        assert not state["pumping"]
        assert before < state["fill_level"] < before + 3.0
        assert ctx.jobs.busy() == {}

        level = state["fill_level"]
        job = c.post("/pumps/F0.0/aspirate", json={"source": "Solvent", "volume": 3.0,
                                                   "flow": 0.01}).json()
        while c.get("/pumps/F0.0").json()["fill_level"] <= level + 0.01:
            assert time.monotonic() < deadline + 30, c.get(f"/jobs/{job['id']}").json()
            time.sleep(0.02)
        stopped = c.post("/estop", content=b'{"reason": "oper\x01ator", "oops": ',
                         headers={"Content-Type": "application/json"})  # not usable: stops anyway
        assert stopped.status_code == 200 and stopped.json()["cancelled_jobs"] == [job["id"]]
        assert not c.get("/pumps/F0.0").json()["pumping"]
        done = wait_job(c, job["id"], timeout=10)
        assert done["state"] == "cancelled" and done["error"]["type"] == "EmergencyStopped"
        level = c.get("/pumps/F0.0").json()["fill_level"]
        time.sleep(0.2)  # ×20: 4 s of bench time at 0.01 mL/s would add 0.04 mL
        assert c.get("/pumps/F0.0").json()["fill_level"] == pytest.approx(level, abs=1e-6)
        assert c.post("/estop/reset").json()["estop"] is None


@pytest.mark.parametrize("token", [" " * 8, " padded-token-123 ", "tab\tinside-token", "new\nline-token"])
def test_blank_or_padded_tokens_are_refused(token):
    with pytest.raises(ConfigError, match="must not contain spaces or control characters"):
        resolve_token(ServerSettings(), environ={"ASAB_SERVER_TOKEN": token})


def test_actions_that_share_nothing_run_together_and_conflicting_ones_answer_409():
    """The actions server claims what each action's plan holds (the pipelined scheduler's
    rule): priming the solvent pump while the cell measures runs at once; draining (through
    the cell) does not; cancelling the prime leaves the measurement alone."""
    with served_bench(speed=100.0) as (ctx, apps):
        a = TestClient(apps["actions"], headers=AUTH)
        delivered = wait_job(a, a.post("/deliver", json={"composition": MAKEABLE}).json()["id"])
        assert delivered["state"] == "succeeded", delivered["error"]
        measuring = a.post("/measure", json={"sample": "together"})
        assert measuring.status_code == 202
        assert measuring.json()["resources"] == ["cell:densiVisco"]
        drain = a.post("/drain", json={})
        assert drain.status_code == 409 and drain.json()["error"]["type"] == "DeviceBusy"
        prime = a.post("/prime", json={"pumps": ["F0.0"]})
        assert prime.status_code == 202, prime.json()
        assert "pump:F0.0" in prime.json()["resources"]
        primed = wait_job(a, prime.json()["id"], timeout=30)
        assert primed["state"] == "succeeded", primed["error"]
        assert a.get(f"/jobs/{measuring.json()['id']}").json()["state"] == "running"
        again = a.post("/prime", json={"pumps": ["F0.0"]})  # primed: nothing to do
        assert again.status_code == 202
        wait_job(a, again.json()["id"])
        ctx.bench.forget_lines()  # F0.0's line counts as dry again: the next prime moves
        moving = a.post("/prime", json={"pumps": ["F0.0"]}).json()
        cancelled = wait_job(a, a.post(f"/jobs/{moving['id']}/cancel").json()["id"], timeout=30)
        assert cancelled["state"] == "cancelled"
        measured = wait_job(a, measuring.json()["id"], timeout=60)
        assert measured["state"] == "succeeded", measured["error"]
        assert measured["result"]["density"]["mean"] == pytest.approx(1.16, abs=0.05)
        assert ctx.jobs.busy() == {}
