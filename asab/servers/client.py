"""Typed Python client for the ``asab serve`` servers (httpx), returning the servers' models.

Example::

    with BenchClient.connect(ServerSettings(), token) as bench:
        plan = bench.actions.formulate({"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64})
        job = bench.actions.wait(bench.actions.deliver(plan.requested).id)
        result = bench.actions.wait(bench.actions.measure("s1").id).result

Every non-2xx answer raises :class:`ApiError` carrying the status and the server's error body
(``closest`` and ``distance`` for a composition that is not makeable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import TypeAdapter

from asab.clock import Clock, RealClock, poll_until
from asab.config.models import ServerSettings
from asab.drivers.base import BalanceReading
from asab.errors import AsabError
from asab.servers.actions import FormulationResponse, ResetResponse
from asab.servers.balance import BalanceInfo
from asab.servers.common import EstopResponse, StatusResponse
from asab.servers.densimeter import DensimeterInfo
from asab.servers.jobs import JobInfo
from asab.servers.pumps import PumpState, ValveState



class ApiError(AsabError):
    """A server answered with an error status.

    Attributes:
        status_code: HTTP status (see :mod:`asab.servers.errors` for the mapping).
        type: the server-side exception class name, e.g. ``"DeviceBusy"``.
        detail: the whole ``error`` object of the body (``device``, ``cause``, ``closest``...).
    """

    def __init__(self, status_code: int, detail: dict[str, Any]):
        self.status_code = status_code
        self.type = str(detail.get("type", "HTTPError"))
        self.detail = detail
        self.closest: dict[str, float] | None = detail.get("closest")
        super().__init__(f"HTTP {status_code} {self.type}: {detail.get('message', '')}")


class _Client:
    """Shared part: one httpx connection pool, bearer auth, status, jobs, emergency stop."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}"})

    def __repr__(self) -> str:  # never show the token
        return f"{type(self).__name__}({str(self._http.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, model: Any, body: Any = None,
              params: Mapping[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body, params=params)
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", {})
            except ValueError:
                detail = {"message": response.text[:200]}
            raise ApiError(response.status_code, detail)
        return TypeAdapter(model).validate_python(response.json())

    def status(self) -> StatusResponse:
        return self._call("GET", "/status", StatusResponse)

    def jobs(self) -> list[JobInfo]:
        return self._call("GET", "/jobs", list[JobInfo])

    def job(self, job_id: str) -> JobInfo:
        return self._call("GET", f"/jobs/{job_id}", JobInfo)

    def cancel(self, job_id: str) -> JobInfo:
        return self._call("POST", f"/jobs/{job_id}/cancel", JobInfo)

    def wait(self, job_id: str, timeout: float = 3600.0, poll: float = 0.2,
             clock: Clock | None = None) -> JobInfo:
        """Poll the job every ``poll`` s until it is no longer running.

        Args:
            job_id: the job's id.
            timeout: s to wait.
            poll: s between looks.
            clock: what waits (default the wall clock, :class:`~asab.clock.RealClock`).

        Raises:
            WaitTimeout: still running after ``timeout`` s (a ``TransportTimeout`` of device
                ``"server"``).
        """
        def finished() -> JobInfo | None:
            job = self.job(job_id)
            return job if job.state != "running" else None

        return poll_until(clock or RealClock(), finished, timeout, f"job {job_id} to finish",
                          poll, device="server")

    def estop(self, reason: str = "emergency stop via HTTP") -> EstopResponse:
        """Stop every pump now and latch the emergency stop."""
        return self._call("POST", "/estop", EstopResponse, {"reason": reason})

    def reset_estop(self) -> EstopResponse:
        return self._call("POST", "/estop/reset", EstopResponse)


class PumpsClient(_Client):
    """Pumps-and-valves server. Volumes in mL, flows in mL/s."""

    def pumps(self) -> list[PumpState]:
        return self._call("GET", "/pumps", list[PumpState])

    def pump(self, name: str) -> PumpState:
        return self._call("GET", f"/pumps/{name}", PumpState)

    def aspirate(self, name: str, source: str, volume: float, flow: float | None = None) -> JobInfo:
        return self._call("POST", f"/pumps/{name}/aspirate", JobInfo,
                          {"source": source, "volume": volume, "flow": flow})

    def dispense(self, name: str, target: str, volume: float | None = None,
                 flow: float | None = None) -> JobInfo:
        return self._call("POST", f"/pumps/{name}/dispense", JobInfo,
                          {"target": target, "volume": volume, "flow": flow})

    def stop(self, name: str) -> PumpState:
        return self._call("POST", f"/pumps/{name}/stop", PumpState)

    def stop_all(self) -> list[PumpState]:
        return self._call("POST", "/pumps/stop", list[PumpState])

    def valves(self) -> list[ValveState]:
        return self._call("GET", "/valves", list[ValveState])

    def valve(self, name: str) -> ValveState:
        return self._call("GET", f"/valves/{name}", ValveState)

    def switch_valve(self, name: str, position: int) -> ValveState:
        return self._call("POST", f"/valves/{name}/position", ValveState, {"position": position})


class BalanceClient(_Client):
    """Balance server. Masses in g."""

    def info(self) -> BalanceInfo:
        return self._call("GET", "/balance", BalanceInfo)

    def reading(self, stable: bool = False, timeout: float | None = None) -> BalanceReading:
        params: dict[str, Any] = {"stable": stable}
        if timeout is not None:
            params["timeout"] = timeout
        return self._call("GET", "/balance/reading", BalanceReading, params=params)

    def tare(self) -> BalanceReading:
        return self._call("POST", "/balance/tare", BalanceReading)

    def zero(self) -> BalanceReading:
        return self._call("POST", "/balance/zero", BalanceReading)


class DensimeterClient(_Client):
    """Densimeter/viscometer server. Density g/cm³, viscosity mPa·s, temperature K."""

    def info(self) -> DensimeterInfo:
        return self._call("GET", "/densimeter", DensimeterInfo)

    def measure(self, sample: str) -> JobInfo:
        return self._call("POST", "/densimeter/measure", JobInfo, {"sample": sample})

    def check(self, sample: str = "check", check_type: str = "Water") -> JobInfo:
        return self._call("POST", "/densimeter/check", JobInfo,
                          {"sample": sample, "check_type": check_type})


class ActionsClient(_Client):
    """Actions server. Compositions are chemical name → mole fraction."""

    def formulate(self, composition: Mapping[str, float], volume: float = 1.0,
                  policy: str | None = None) -> FormulationResponse:
        body = {"composition": dict(composition), "volume": volume, "policy": policy}
        return self._call("POST", "/formulate", FormulationResponse, body)

    def prime(self, pumps: list[str] | None = None) -> JobInfo:
        return self._call("POST", "/prime", JobInfo, {"pumps": pumps})

    def mix(self, composition: Mapping[str, float]) -> JobInfo:
        return self._call("POST", "/mix", JobInfo, {"composition": dict(composition)})

    def deliver(self, composition: Mapping[str, float]) -> JobInfo:
        return self._call("POST", "/deliver", JobInfo, {"composition": dict(composition)})

    def measure(self, sample: str) -> JobInfo:
        return self._call("POST", "/measure", JobInfo, {"sample": sample})

    def drain(self, sink: str | None = None) -> JobInfo:
        return self._call("POST", "/drain", JobInfo, {"sink": sink})

    def clean(self) -> JobInfo:
        return self._call("POST", "/clean", JobInfo)

    def calibrate(self, pump: str, volume: float = 1.0, repeats: int = 3) -> JobInfo:
        return self._call("POST", "/calibrate", JobInfo,
                          {"pump": pump, "volume": volume, "repeats": repeats})

    def reset_bench(self) -> ResetResponse:
        """``POST /bench/reset`` after the operator dealt with the cause of an out-of-service
        bench; raises :class:`ApiError` (409) while a job runs, the e-stop is latched, or the
        bench is still unsafe."""
        return self._call("POST", "/bench/reset", ResetResponse)


class BenchClient:
    """The four clients of one ``asab serve``, addressed from its :class:`ServerSettings`."""

    def __init__(self, pumps: PumpsClient, balance: BalanceClient, densimeter: DensimeterClient,
                 actions: ActionsClient) -> None:
        self.pumps, self.balance, self.densimeter, self.actions = pumps, balance, densimeter, actions

    @classmethod
    def connect(cls, settings: ServerSettings, token: str, host: str | None = None,
                timeout: float = 30.0) -> BenchClient:
        """Clients for ``http://<host or settings.host>:<port>`` of each server."""
        h, p = host or settings.host, settings.ports

        def url(port: int) -> str:
            return f"http://{h}:{port}"
        return cls(PumpsClient(url(p.pumps), token, timeout=timeout),
                   BalanceClient(url(p.balance), token, timeout=timeout),
                   DensimeterClient(url(p.densimeter), token, timeout=timeout),
                   ActionsClient(url(p.actions), token, timeout=timeout))

    def close(self) -> None:
        for c in (self.pumps, self.balance, self.densimeter, self.actions):
            c.close()

    def __enter__(self) -> BenchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
