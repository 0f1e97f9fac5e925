"""``asab serve`` as a separate process on free loopback ports, for the tests that restart it
or drive its live page in a browser."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests._servers_support import TOKEN

ASAB = "from asab.cli.main import main; main()"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_base_port() -> int:
    """The first of four free consecutive loopback ports."""
    for base in range(21000 + (os.getpid() * 13) % 20000, 65000, 7):
        try:
            for port in range(base, base + 4):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no four free consecutive ports")


class Serve:
    """One ``asab serve`` process (simulated bench) on ``base``…``base + 3``.

    Args:
        work: folder for its serve folder (``work/serve``), bench state (``work/state``)
            and log.
        speed: simulated real time × speed.
    """

    def __init__(self, work: Path, base: int, speed: float = 20.0) -> None:
        self.work, self.base, self.speed = Path(work), base, speed
        self.out, self.state = self.work / "serve", self.work / "state"
        self.actions = f"http://127.0.0.1:{base + 3}"
        self.pumps = f"http://127.0.0.1:{base}"
        self.balance = f"http://127.0.0.1:{base + 1}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Serve:
        env = {**os.environ, "ASAB_SERVER_TOKEN": TOKEN}
        env.pop("ASAB_STATE", None)
        log = (self.work / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ASAB, "serve", "--base-port", str(self.base),
             "--speed", str(self.speed), "--out", str(self.out), "--state", str(self.state)],
            stdout=log, stderr=log, env=env, cwd=self.work)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"asab serve exited with {self.proc.returncode}: "
                                     + (self.work / "serve.log").read_text()[-2000:])
            try:
                if httpx.get(self.actions + "/status", headers=AUTH, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"asab serve not ready after {timeout} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Send ``sig`` and wait for the process (killed after ``timeout`` s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def get(self, url: str, **kw) -> httpx.Response:
        return httpx.get(url, headers=AUTH, timeout=10, **kw)

    def post(self, url: str, body=None) -> httpx.Response:
        return httpx.post(url, headers=AUTH, json=body if body is not None else {}, timeout=10)

    def wait_job(self, job_id: str, timeout: float = 120.0, until=None) -> dict:
        """Poll the job until ``until(job)`` (default: it is no longer running)."""
        until = until or (lambda job: job["state"] != "running")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"{self.actions}/jobs/{job_id}").json()
            if until(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} not there after {timeout} s: {job}")
