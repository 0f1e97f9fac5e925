"""``POST /bench/reset`` on the actions server: the operator's way back into service after a
latched pump drive fault (asab.actions.safety.reset_faults behind it)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from asab.actions.safety import DRIVE_FAULT_ADVICE
from tests._servers_support import AUTH, served_bench


@pytest.fixture
def served():
    with served_bench(speed=0.0) as (ctx, apps):
        yield ctx, TestClient(apps["actions"], headers=AUTH)


def _latch_overload(ctx, pump: str = "D0.0") -> None:
    """Fault ``pump``'s drive, remove the cause, and mark the bench out of service as a
    failed recovery would."""
    world = ctx.bench.simulation.world
    world.inject(pump, "overload")
    world.start_pump(pump, "aspirate", 0.1, 0.05)  # faults at once
    world.clear_faults()  # the cause only: the drive stays latched
    assert world.pump_status(pump).fault == "overload"
    ctx.bench.out_of_service = f"recovery failed: pump {pump}: {DRIVE_FAULT_ADVICE}"


def test_reset_clears_the_drive_and_puts_the_bench_back_in_service(served):
    ctx, client = served
    _latch_overload(ctx)
    assert client.get("/status").json()["out_of_service"].endswith(DRIVE_FAULT_ADVICE)
    r = client.post("/bench/reset")
    assert r.status_code == 200, r.json()
    assert r.json()["done"].startswith("drive faults cleared: D0.0; pumps stopped; valves parked")
    assert r.json()["out_of_service"] is None
    assert client.get("/status").json()["out_of_service"] is None
    assert ctx.bench.simulation.world.pump_status("D0.0").fault is None


def test_reset_refused_while_busy_or_emergency_stopped(served):
    ctx, client = served
    _latch_overload(ctx)
    with ctx.jobs.claim(["pumps"]):  # a job or request holds the pumps
        r = client.post("/bench/reset")
    assert r.status_code == 409 and r.json()["error"]["type"] == "DeviceBusy"
    ctx.bench.estop = "test"
    r = client.post("/bench/reset")
    assert r.status_code == 409 and r.json()["error"]["type"] == "EmergencyStopped"
    ctx.bench.reset_estop()
    assert ctx.bench.out_of_service and ctx.bench.simulation.world.pump_status("D0.0").fault


def test_reset_of_a_still_unsafe_bench_keeps_it_out_of_service(served):
    ctx, client = served
    _latch_overload(ctx)
    ctx.bench.valves["V3"].switch(0)  # D0.0 open to its reservoir ...
    ctx.bench.simulation.inject("V3", "stuck")  # ... and the valve cannot be parked
    r = client.post("/bench/reset")
    assert r.status_code == 409, r.json()
    error = r.json()["error"]
    assert (error["type"], error["device"], error["cause"]) == ("SafetyError", "bench", "unsafe")
    assert "valve V3" in error["message"]
    assert ctx.bench.out_of_service.startswith("reset failed: valve V3")


def test_typed_client_resets_the_bench(served):
    """The typed client's ``reset_bench`` speaks the same route (TestClient is an httpx client,
    so its transport carries the typed client's calls in-process)."""
    from asab.servers.client import ActionsClient
    from tests._servers_support import TOKEN

    ctx, test_client = served
    _latch_overload(ctx)
    client = ActionsClient("http://testserver", TOKEN, transport=test_client._transport)
    answer = client.reset_bench()
    assert answer.out_of_service is None and ctx.bench.out_of_service is None
