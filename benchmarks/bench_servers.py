"""Server latency benchmark: ``python benchmarks/bench_servers.py [--clients 50] [--requests 40]``.

Starts ``asab serve`` (simulated hiu_2023 bench, real time) as a separate process on free
ports, then ``--clients`` concurrent keep-alive connections send ``--requests`` sequential
``GET /status`` each to

* the pumps server while the bench is idle;
* the pumps server while a deliver job moves liquid on the same bench (jobs run in worker
  threads, so the event loop must keep answering);
* all four servers at once (clients spread over the ports) during that job.

The table gives the latency median, 90th and 99th percentile and maximum per row, the
throughput (requests per wall-clock second) and the server process's CPU time per request.
Client and server share the machine's cores, so each load is run twice: with httpx's
AsyncClient (the client costs about three times the server's CPU per request) and with a
minimal asyncio HTTP/1.1 keep-alive client (what the server alone can do).
Target: median < 50 ms with 50 clients (status is what an operator's dashboard polls).

Needs the ``bench`` extra (psutil, for the server's CPU time):
``python -m pip install -c constraints.txt -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time

import httpx

try:
    import psutil
except ModuleNotFoundError:  # pragma: no cover - a message instead of a traceback
    sys.exit('bench_servers.py needs psutil: python -m pip install -c constraints.txt -e ".[bench]"')

TOKEN = "bench-token-0123456789"
TARGET_MS = 50.0
MIX = {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}


def free_base_port() -> int:
    for base in range(30000 + os.getpid() % 10000, 65000, 7):
        try:
            for port in range(base, base + 4):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no four free consecutive ports")


def start_server(base: int) -> subprocess.Popen:
    env = {**os.environ, "ASAB_SERVER_TOKEN": TOKEN}
    cmd = [sys.executable, "-c", "from asab.cli.main import main; main()", "serve",
           "--speed", "1", "--base-port", str(base)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://127.0.0.1:{base}/status",
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=1)
            if r.status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("asab serve did not start within 60 s")


async def one_client(url: str, n: int, out: list[float]) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            r = await c.get(url)
            out.append(time.perf_counter() - t0)
            r.raise_for_status()


_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


async def raw_client(url: str, n: int, out: list[float]) -> None:
    """One keep-alive HTTP/1.1 connection sending ``n`` GETs (no parsing beyond the length)."""
    host, port, path = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    reader, writer = await asyncio.open_connection(host, int(port))
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
               f"Authorization: Bearer {TOKEN}\r\n\r\n").encode()
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(_LENGTH.search(head)[1]))
            out.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
    finally:
        writer.close()


async def load(urls: list[str], clients: int, requests: int, client=one_client,
               server: psutil.Process | None = None) -> tuple[list[float], float, float]:
    latencies: list[float] = []
    cpu0 = sum(server.cpu_times()[:2]) if server else 0.0
    t0 = time.perf_counter()
    await asyncio.gather(*(client(urls[i % len(urls)], requests, latencies)
                           for i in range(clients)))
    wall = time.perf_counter() - t0
    cpu = sum(server.cpu_times()[:2]) - cpu0 if server else 0.0
    return latencies, wall, cpu


def row(name: str, latencies: list[float], wall: float, cpu: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    med = statistics.median(ms)
    verdict = "PASS" if med < TARGET_MS else "FAIL"
    return (f"| {name} | {len(ms)} | {med:.1f} | {q[89]:.1f} | {q[98]:.1f} | {ms[-1]:.1f} "
            f"| {len(ms) / wall:.0f} | {1000 * cpu / len(ms):.2f} | {verdict} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=40, help="per client")
    args = ap.parse_args()
    base = free_base_port()
    proc = start_server(base)
    urls = [f"http://127.0.0.1:{base + i}/status" for i in range(4)]
    server = psutil.Process(proc.pid)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    lines: list[str] = []

    def measure(name: str, targets: list[str]) -> None:
        for label, client in (("httpx", one_client), ("raw", raw_client)):
            result = asyncio.run(load(targets, args.clients, args.requests, client, server))
            lines.append(row(f"{name} ({label} client)", *result))
    try:
        measure("pumps /status, bench idle", urls[:1])
        job = httpx.post(f"http://127.0.0.1:{base + 3}/deliver", json={"composition": MIX},
                         headers=auth, timeout=10)
        job.raise_for_status()
        measure("pumps /status, deliver job running", urls[:1])
        measure("4 servers /status, deliver job running", urls)
        state = httpx.get(f"http://127.0.0.1:{base + 3}/jobs/{job.json()['id']}",
                          headers=auth).json()["state"]
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"GET /status latency, {args.clients} concurrent clients × {args.requests} requests "
          f"(ms; target median < {TARGET_MS:g} ms); deliver job state at the end: {state}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("| load | requests | median | p90 | p99 | max | req/s | server CPU ms/req "
          "| median < target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
