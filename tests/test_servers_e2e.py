"""End to end over real sockets and separate processes: ``python -m simulators`` (the
simulated bench on loopback, ×150 real time) and ``asab serve --hardware`` on the exported
configuration, driven with the typed client: formulate, deliver and measure one sample,
cancel a second delivery mid-way, emergency stop, reset, clean."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from asab.config.models import ServerPorts, ServerSettings
from asab.servers.client import ApiError, BenchClient
from tests._servers_support import CONFIG, MAKEABLE, TOKEN

SPEED = 150.0
SERVE = "from asab.cli.main import main; main()"


def _free_base_port() -> int:
    for base in range(20000 + os.getpid() % 20000, 65000, 7):
        try:
            for port in range(base, base + 4):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no four free consecutive ports")


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
    env = {**os.environ, "ASAB_SERVER_TOKEN": TOKEN}
    sim = subprocess.Popen([sys.executable, "-m", "simulators", "--config", str(CONFIG),
                            "--workdir", str(work / "sim"), "--speed", str(SPEED)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    serve = None
    try:
        _wait_for(lambda: (work / "sim" / "ready.json").exists(), 60, "simulator", sim)
        bench_dir = json.loads((work / "sim" / "ready.json").read_text())["config_dir"]
        base = _free_base_port()
        serve = subprocess.Popen([sys.executable, "-c", SERVE, "serve", "--hardware", "--config",
                                  bench_dir, "--base-port", str(base)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        ports = ServerPorts(pumps=base, balance=base + 1, densimeter=base + 2, actions=base + 3)
        bench = BenchClient.connect(ServerSettings(ports=ports), TOKEN)

        def up() -> bool:
            try:
                return bench.actions.status().estop is None
            except Exception:  # noqa: BLE001 - not listening yet
                return False
        _wait_for(up, 60, "asab serve", serve)
        yield bench
        bench.close()
    finally:
        if serve is not None:
            _stop(serve)
        _stop(sim)


def test_formulate_deliver_measure_cancel_estop(client: BenchClient):
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

    third = a.clean()
    assert client.pumps.estop("e2e test").estop == "e2e test"
    assert not any(p.pumping for p in client.pumps.pumps())
    assert a.wait(third.id, timeout=30, poll=0.05).state in ("cancelled", "succeeded")
    with pytest.raises(ApiError) as refused:
        a.clean()
    assert refused.value.status_code == 409 and refused.value.type == "EmergencyStopped"
    client.densimeter.reset_estop()
    assert a.wait(a.clean().id, timeout=120, poll=0.05).state == "succeeded"
