"""The HTTP servers in process (FastAPI TestClient) on a simulated bench on virtual time:
auth, error mapping, jobs, busy, cancellation and the emergency stop."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from asab.actions.bench import EmergencyStopped, OperationCancelled
from asab.config.models import ServerSettings
from asab.errors import (
    ConfigError, DeviceBusy, DeviceError, DeviceFault, NotMakeableError, RequestError,
    TransportError, TransportTimeout,
)
from asab.servers.errors import status_of
from asab.servers.run import resolve_token
from tests._servers_support import AUTH, MAKEABLE, NOT_MAKEABLE, served_bench


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
        paths = client.get("/openapi.json", headers={"Authorization": ""}).json()["paths"]
        assert len(paths) >= 7
        for template, methods in paths.items():
            path = template.replace("{name}", "A0.0").replace("{job_id}", "x")
            for method in methods:
                for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token"}):
                    r = client.request(method, path, headers=headers)
                    assert r.status_code == 401, (name, method, path, r.status_code)
        assert client.get("/docs", headers={"Authorization": ""}).status_code == 200


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
        stopped = c.post("/estop", json={"reason": "operator"}).json()
        assert stopped["cancelled_jobs"] == [job["id"]]
        assert not c.get("/pumps/F0.0").json()["pumping"]
        done = wait_job(c, job["id"], timeout=10)
        assert done["state"] == "cancelled" and done["error"]["type"] == "EmergencyStopped"
        assert c.post("/estop/reset").json()["estop"] is None
