"""The e-stop stays reachable under a connection flood: ``asab serve`` as its own process, a
bounded loop on loopback opens 30,000 connections to the actions port that send nothing or a
request head one byte at a time, and meanwhile ``POST /estop`` on every port answers within
1 s and the pump that was moving stops. The server holds no more connections than its cap.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests._servers_support import AUTH, TOKEN
from tests.test_servers_e2e import ASAB, _free_base_port, _stop, _wait_for

pytestmark = pytest.mark.e2e

ATTEMPTS = 30_000
CLIENT_OPEN = 12_000
"""Client sockets the flood keeps open at once (this test process's own file limit)."""


def _flood(port: int, stop: threading.Event, stats: dict) -> None:
    """Open up to ATTEMPTS connections; every 3rd sends a slow partial head; keep at most
    CLIENT_OPEN open (the oldest closed first). Bounded in count and in time (60 s)."""
    held: list[socket.socket] = []
    deadline = time.monotonic() + 60
    for n in range(ATTEMPTS):
        if stop.is_set() or time.monotonic() > deadline:
            break
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
            if n % 3 == 0:
                s.send(b"GET /status HTTP/1.1\r\nHo")  # never finished
            stats["connected"] += 1
        except OSError:
            stats["failed"] += 1
            s.close()
            continue
        held.append(s)
        if len(held) > CLIENT_OPEN:
            held.pop(0).close()
        stats["attempted"] = n + 1
    stats["done"] = True
    stop.wait(30)
    for s in held:
        s.close()


def _server_connections(pid: int) -> int:
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir()
               if os.readlink(fd).startswith("socket:"))


def test_estop_answers_within_a_second_on_every_port_under_30000_connections(tmp_path) -> None:
    base = _free_base_port()
    env = {**os.environ, "ASAB_SERVER_TOKEN": TOKEN, "ASAB_RUNTIME_DIR": str(tmp_path / "rt")}
    serve = subprocess.Popen([sys.executable, "-c", ASAB, "serve", "--base-port", str(base),
                              "--speed", "1"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    ports = {"pumps": base, "balance": base + 1, "densimeter": base + 2, "actions": base + 3}
    stop = threading.Event()
    stats = {"attempted": 0, "connected": 0, "failed": 0, "done": False}
    try:
        client = httpx.Client(headers=AUTH, timeout=5)

        def up() -> bool:
            try:
                return client.get(f"http://127.0.0.1:{base}/status").status_code == 200
            except httpx.HTTPError:
                return False
        _wait_for(up, 60, "asab serve", serve)
        url = f"http://127.0.0.1:{base}"
        move = client.post(f"{url}/pumps/A0.0/aspirate",
                           json={"source": "Reservoir6", "volume": 5.0, "flow": 0.01})
        assert move.status_code == 202, move.text
        flood = threading.Thread(target=_flood, args=(ports["actions"], stop, stats), daemon=True)
        flood.start()
        while stats["attempted"] < ATTEMPTS * 0.6 and not stats["done"]:
            time.sleep(0.05)
        latencies = {}
        for name, port in ports.items():
            with httpx.Client(headers=AUTH, timeout=1.0) as fresh:  # a new connection each
                t0 = time.monotonic()
                r = fresh.post(f"http://127.0.0.1:{port}/estop", json={"reason": "flood"})
                latencies[name] = time.monotonic() - t0
                assert r.status_code == 200, (name, r.text)
        while not stats["done"]:
            time.sleep(0.1)
        held = _server_connections(serve.pid)
        pump = client.get(f"{url}/pumps/A0.0").json()
        assert pump["pumping"] is False
        assert max(latencies.values()) < 1.0, latencies
        assert stats["attempted"] == ATTEMPTS
        assert held <= 4 * 1000 + 64, held  # the caps hold (plus listening and device sockets)
        print(f"\n[estop flood] {stats}, server sockets {held}, e-stop latency "
              + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in latencies.items()))
    finally:
        stop.set()
        _stop(serve)
