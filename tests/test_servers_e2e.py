"""End to end over real sockets and separate processes: ``asab simulate`` (the simulated
bench on loopback, ×150 real time) and ``asab serve --hardware`` on the exported
configuration, driven with the typed client: formulate, deliver and measure one sample,
cancel a second delivery mid-way, then a long pump job stopped mid-move by an emergency stop
sent (with a body the e-stop cannot use) to another server; motion refused until reset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from asab.config.models import ServerPorts, ServerSettings
from asab.servers.client import ApiError, BenchClient
from tests._serve_process import free_base_port
from tests._servers_support import CONFIG, MAKEABLE, TOKEN

SPEED = 150.0
ASAB = "from asab.cli.main import main; main()"
"""``python -c ASAB ...`` runs the ``asab`` console script with this interpreter."""


_free_base_port = free_base_port  # the name tests/test_estop_flood.py imports


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_for(check, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready after {timeout} s")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    env = {**os.environ, "ASAB_SERVER_TOKEN": TOKEN, "ASAB_STATE": str(work / "state")}
    sim = subprocess.Popen([sys.executable, "-c", ASAB, "simulate", "--config", str(CONFIG),
                            "--workdir", str(work / "sim"), "--speed", str(SPEED)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    serve = None
    try:
        _wait_for(lambda: (work / "sim" / "ready.json").exists(), 60, "simulator", sim)
        bench_dir = json.loads((work / "sim" / "ready.json").read_text())["config_dir"]
        base = _free_base_port()
        serve = subprocess.Popen([sys.executable, "-c", ASAB, "serve", "--hardware", "--config",
                                  bench_dir, "--base-port", str(base),
                                  "--out", str(work / "serve")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        ports = ServerPorts(pumps=base, balance=base + 1, densimeter=base + 2, actions=base + 3)
        bench = BenchClient.connect(ServerSettings(ports=ports), TOKEN)

        def up() -> bool:
            try:
                return bench.actions.status().estop is None
            except Exception:  # noqa: BLE001 - not listening yet
                return False
        _wait_for(up, 60, "asab serve", serve)
        yield bench, ports
        bench.close()
    finally:
        if serve is not None:
            _stop(serve)
        _stop(sim)


def test_formulate_deliver_measure_cancel_estop(client: tuple[BenchClient, ServerPorts]):
    client, ports = client
    a = client.actions
    plan = a.formulate(MAKEABLE)
    assert plan.makeable and plan.achieved["EC"] == pytest.approx(0.29, abs=1e-9)
    with pytest.raises(ApiError) as info:
        a.formulate({"LiPF6": 0.5, "EC": 0.25, "EMC": 0.25})
    assert info.value.status_code == 422 and set(info.value.closest) == {"LiPF6", "EC", "EMC"}

    delivered = a.wait(a.deliver(MAKEABLE).id, timeout=120, poll=0.05)
    assert delivered.state == "succeeded", delivered.error
    measured = a.wait(a.measure("e2e_1").id, timeout=120, poll=0.05)
    assert measured.state == "succeeded", measured.error
    assert measured.result["density"]["n_valid"] >= 1
    assert measured.result["density"]["mean"] == pytest.approx(1.164, abs=0.01)
    drained = a.wait(a.drain().id, timeout=120, poll=0.05)
    assert drained.state == "succeeded" and drained.result["mass"] > 0

    second = a.deliver({"LiPF6": 0.1, "EC": 0.3, "EMC": 0.6})
    deadline = time.monotonic() + 60
    while a.job(second.id).step not in ("mix", "deliver") and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(ApiError) as busy:
        client.balance.tare()
    assert busy.value.status_code == 409
    a.cancel(second.id)
    cancelled = a.wait(second.id, timeout=30, poll=0.05)
    assert cancelled.state == "cancelled", (cancelled.state, cancelled.error)
    assert not any(p.pumping for p in client.pumps.pumps())

    _estop_mid_move(client, f"http://127.0.0.1:{ports.balance}/estop")
    with pytest.raises(ApiError) as refused:
        a.clean()
    assert refused.value.status_code == 409 and refused.value.type == "EmergencyStopped"
    client.densimeter.reset_estop()
    assert a.wait(a.clean().id, timeout=120, poll=0.05).state == "succeeded"


def _estop_mid_move(client: BenchClient, estop_url: str) -> None:
    """A 300 s (bench time) aspiration, e-stopped on the balance server once the plunger
    moves, with a malformed body: the job ends cancelled by the e-stop, part-way, and no pump
    moves afterwards."""
    pumps = client.pumps
    start = pumps.pump("F0.0")
    volume = min(3.0, start.volume_max - start.fill_level - 0.1)
    job = pumps.aspirate("F0.0", "Solvent", volume, flow=volume / 300)
    deadline = time.monotonic() + 30
    while pumps.pump("F0.0").fill_level <= start.fill_level + 0.01:
        assert time.monotonic() < deadline, pumps.job(job.id)
        assert pumps.job(job.id).state == "running", pumps.job(job.id)
        time.sleep(0.02)
    r = httpx.post(estop_url, content=b'{"reason": "oops\x07"',
                   headers={"Authorization": f"Bearer {TOKEN}",
                            "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["cancelled_jobs"] == [job.id] and r.json()["reason_ignored"]
    assert not any(p.pumping for p in pumps.pumps())
    done = pumps.wait(job.id, timeout=30, poll=0.05)
    assert done.state in ("cancelled", "failed"), done
    assert done.error is not None and done.error["type"] == "EmergencyStopped", done.error
    level = pumps.pump("F0.0").fill_level
    assert start.fill_level < level < start.fill_level + volume
    time.sleep(0.3)  # 45 s of bench time: the aspiration would have added 0.15·volume mL
    assert not any(p.pumping for p in pumps.pumps())
    assert pumps.pump("F0.0").fill_level == pytest.approx(level, abs=1e-6)
    assert client.actions.status().estop is not None
