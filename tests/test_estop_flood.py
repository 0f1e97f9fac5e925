"""The e-stop stays reachable under a connection flood: ``asab serve`` as its own process, a
bounded loop on loopback opens 30,000 connections to the actions port that send nothing or a
request head one byte at a time, and meanwhile ``POST /estop`` on every port answers within
1 s and the pump that was moving stops. The server holds no more connections than its cap.
"""

from __future__ import annotations

import os
import subprocess
import sys
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


FLOOD = """
import errno, socket, sys, time
port, attempts, keep = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
held, failed, deadline = [], 0, time.monotonic() + 60
for n in range(attempts):
    if time.monotonic() > deadline:
        break
    s = socket.socket()
    if n % 3 == 0:  # a connection whose request head never finishes
        s.settimeout(0.2)
        try:
            s.connect(("127.0.0.1", port))
            s.send(b"GET /status HTTP/1.1\\r\\nHo")
        except OSError:
            failed += 1
    else:  # a connection that sends nothing (not waited for: the kernel completes it)
        s.setblocking(False)
        if s.connect_ex(("127.0.0.1", port)) not in (0, errno.EINPROGRESS):
            failed += 1
    held.append(s)
    if len(held) > keep:
        held.pop(0).close()
    if n % 1000 == 0:
        print(n, flush=True)
print("done", n + 1, failed, flush=True)
sys.stdin.read()  # hold the last connections until the test has looked
"""
"""The flood, in its own process (so it cannot starve the test's own client of the GIL):
ATTEMPTS connections, every 3rd with a slow partial head, at most CLIENT_OPEN open at once
(oldest closed first). Bounded in count and in time (60 s)."""


def _server_connections(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except FileNotFoundError:  # closed while we looked
            pass
    return count


def test_estop_answers_within_a_second_on_every_port_under_30000_connections(tmp_path) -> None:
    base = _free_base_port()
    env = {**os.environ, "ASAB_SERVER_TOKEN": TOKEN, "ASAB_RUNTIME_DIR": str(tmp_path / "rt")}
    serve = subprocess.Popen([sys.executable, "-c", ASAB, "serve", "--base-port", str(base),
                              "--speed", "1", "--out", str(tmp_path / "serve")], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    ports = {"pumps": base, "balance": base + 1, "densimeter": base + 2, "actions": base + 3}
    stats = {"attempted": 0, "failed": 0}
    flood = None
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
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(ports["actions"]),
                                  str(ATTEMPTS), str(CLIENT_OPEN)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        progress = 0
        while progress < ATTEMPTS * 0.6:  # e-stop while the flood is at its height
            line = flood.stdout.readline()
            assert line, "flood ended early"
            progress = int(line.split()[0]) if line[0].isdigit() else ATTEMPTS
        latencies = {}
        for name, port in ports.items():
            with httpx.Client(headers=AUTH, timeout=1.0) as fresh:  # a new connection each
                t0 = time.monotonic()
                r = fresh.post(f"http://127.0.0.1:{port}/estop", json={"reason": "flood"})
                latencies[name] = time.monotonic() - t0
                assert r.status_code == 200, (name, r.text)
        for line in flood.stdout:
            if line.startswith("done"):
                _, attempted, failed = line.split()
                stats.update(attempted=int(attempted), failed=int(failed))
                break
        settle = time.monotonic() + 5  # closes of evicted connections run on the next loop turn
        cap = 1000 + 64  # the flooded server's cap, plus listening, device and client sockets
        while (held := _server_connections(serve.pid)) > cap and time.monotonic() < settle:
            time.sleep(0.1)
        pump = client.get(f"{url}/pumps/A0.0").json()
        assert pump["pumping"] is False
        assert max(latencies.values()) < 1.0, latencies
        assert stats["attempted"] == ATTEMPTS
        assert held <= cap, held
        print(f"\n[estop flood] {stats}, server sockets {held}, e-stop latency "
              + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in latencies.items()))
    finally:
        if flood is not None:
            flood.kill()
            flood.wait(10)
        _stop(serve)
