"""Long operations as jobs: run in worker threads, claim devices, report progress, cancel.

A job claims a set of *resources* for its whole run: whole device families (``"pumps"``,
``"valves"``, ``"balance"``, ``"densimeter"``), or — an action's plan — the resources its
steps hold (``"pump:A0.0"``, ``"valve:V6"``, ``"tube:…"``, ``"vessel:waste_1"``,
``"cell:densiVisco"``, ``"balance"``; :func:`asab.plan.schedule.resources`), the rule of the
pipelined scheduler. A claim that meets a held resource (the same one, or one of a held
family, or a family of which one is held) raises :class:`~asab.errors.DeviceBusy`
(HTTP 409); one that does not runs at the same time (a measurement while another line is
primed). A job that claims ``"pumps"`` owns the bench's cancel token (``bench.cancel``):
cancelling it sets the token and stops every pump at once; a job with a plan's claims is
cancelled alone (its own pumps stopped, its next checkpoint raises). Either way the action
ends at its next motion checkpoint with :class:`~asab.actions.bench.OperationCancelled`. A
job that fails stops every pump and cancels every other running job.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from asab.actions.bench import Bench, EmergencyStopped, OperationCancelled, owned_by
from asab.errors import Cause, DeviceBusy, describe

log = logging.getLogger(__name__)

RESOURCES = ("pumps", "valves", "balance", "densimeter")
"""The device families; bench-wide actions claim all of them."""

FAMILIES = {"pump:": "pumps", "valve:": "valves", "cell:": "densimeter", "balance": "balance"}
"""Prefix of a plan's resource → the family it belongs to."""


def family(resource: str) -> str | None:
    """The device family of ``resource`` (``"pump:A0.0"`` → ``"pumps"``), or None."""
    return next((f for prefix, f in FAMILIES.items() if resource.startswith(prefix)), None)


def clash(a: str, b: str) -> bool:
    """Whether claims ``a`` and ``b`` exclude each other."""
    return a == b or family(a) == b or family(b) == a

JobState = Literal["running", "succeeded", "failed", "cancelled", "interrupted"]
"""``interrupted``: the server stopped while the job ran (a restarted server shows it so)."""


class JobInfo(BaseModel):
    """State of one job as the servers report it."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="job id (uuid4 hex)")
    kind: str = Field(description="what the job does, e.g. 'deliver'")
    state: JobState
    step: str = Field(default="", description="current step, e.g. 'mix'")
    progress: float = Field(default=0.0, ge=0, le=1, description="fraction of steps done")
    cancel_requested: bool = False
    resources: list[str] = Field(description="devices the job holds while it runs")
    result: dict[str, Any] | None = Field(default=None, description="JSON result when succeeded")
    error: dict[str, Any] | None = Field(
        default=None, description="type, message (and device, cause, ...) when failed/cancelled")
    created: str = Field(description="wall-clock ISO 8601 UTC")
    finished: str | None = None
    record: str | None = Field(default=None, description=(
        "the job's record file in the serve folder (asab serve --out), or null when the "
        "server keeps no records"))
    raw: list[str] = Field(default_factory=list, description=(
        "instrument exports kept in the serve folder's raw/ for this job"))


def _fine(resources: Iterable[str]) -> bool:
    """A plan's claims (not whole device families)."""
    return not any(r in RESOURCES for r in resources)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class JobHandle:
    """What a job function sees: report steps, ask whether it was cancelled."""

    def __init__(self, info: JobInfo, steps: Sequence[str], lock: threading.Lock,
                 history=None, changed: threading.Event | None = None) -> None:
        self._info, self._steps, self._lock = info, list(steps), lock
        self._history = history
        self._changed = changed
        self.cancelled = threading.Event()

    @property
    def id(self) -> str:
        return self._info.id

    def keep_raw(self, name: str, text: str) -> str | None:
        """Keep an instrument export with the job's record (``raw/`` of the serve folder);
        returns its path, or None when the server keeps no records."""
        if self._history is None:
            return None
        try:
            path = str(self._history.keep_raw(self._info.id, name, text))
        except OSError as exc:  # the measurement stands; the export stays with the instrument
            log.warning("could not keep raw export %s of job %s: %s", name, self._info.id, exc)
            return None
        with self._lock:
            self._info.raw.append(path)
        return path

    def note(self, **fields) -> None:
        """Extra fields for the job's record (:class:`asab.servers.history.ServeRecord`)."""
        if self._history is not None:
            self._history.note(self._info.id, **fields)

    def step(self, name: str) -> None:
        """Enter step ``name`` (progress = index of the step in the planned list / count)."""
        with self._lock:
            self._info.step = name
            if name in self._steps:
                self._info.progress = self._steps.index(name) / len(self._steps)
            copy = self._info.model_copy(deep=True)
        if self._history is not None:
            self._history.save(copy)
        if self._changed is not None:
            self._changed.set()


JobFn = Callable[[JobHandle], BaseModel | dict[str, Any] | None]


class JobManager:
    """Runs jobs on one bench; thread-safe; keeps the last ``keep`` finished jobs.

    Args:
        bench: the shared bench (its cancel token and emergency stop).
        keep: finished jobs kept for ``GET /jobs/{id}``.
        history: where jobs are recorded (:class:`asab.servers.history.JobHistory`); its
            earlier jobs are listed again (the last ``keep``), those that were running when
            their server stopped as ``interrupted``. None: jobs are kept in memory only.
    """

    def __init__(self, bench: Bench, keep: int = 200, history=None) -> None:
        self.bench = bench
        self._keep = keep
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, JobInfo] = OrderedDict()
        self.history = history
        self.changed = threading.Event()
        """Set whenever a job starts, changes step or ends (the live page's stream clears it)."""
        for info in (history.load() if history is not None else []):
            self._jobs[info.id] = info
        self._forget_old()
        self._handles: dict[str, JobHandle] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._held: dict[str, str] = {}  # resource → job id (or "request")
        self._local = threading.local()
        self.key = object()  # the bench lock's owner for jobs with a plan's claims
        if bench.task_check is None:
            bench.task_check = self._check

    def _check(self) -> None:
        """:attr:`Bench.task_check`: a job cancelled alone stops at its next checkpoint."""
        handle = getattr(self._local, "handle", None)
        if handle is not None and handle.cancelled.is_set():
            raise OperationCancelled("operation cancelled; pumps stopped")

    # ------------------------------------------------------------------ queries
    def get(self, job_id: str) -> JobInfo:
        """A copy of the job's state. Raises KeyError (HTTP 404) for an unknown id."""
        with self._lock:
            return self._jobs[job_id].model_copy(deep=True)

    def list(self) -> list[JobInfo]:
        with self._lock:
            return [j.model_copy(deep=True) for j in self._jobs.values()]

    def busy(self) -> dict[str, str]:
        """Held resource → id of the job (or ``"request"``) holding it."""
        with self._lock:
            return dict(self._held)

    # ------------------------------------------------------------------ claims
    def _claim(self, resources: Iterable[str], owner: str) -> None:
        wanted = sorted(set(resources))
        taken = {h: o for h, o in self._held.items() if any(clash(r, h) for r in wanted)}
        if taken:
            who = ", ".join(f"{r} (job {j})" for r, j in taken.items())
            raise DeviceBusy(next(iter(taken)), Cause.BUSY, f"busy with another job: {who}")
        for r in wanted:
            self._held[r] = owner

    def _release(self, owner: str) -> None:
        for r in [r for r, o in self._held.items() if o == owner]:
            del self._held[r]

    @contextlib.contextmanager
    def claim(self, resources: Iterable[str], motion: bool = False) -> Iterator[None]:
        """Hold ``resources`` for a short synchronous request (e.g. tare, switch a valve).

        Raises:
            DeviceBusy: a job holds one of them.
            EmergencyStopped: ``motion`` and the emergency stop is latched.
        """
        owner = f"request-{uuid.uuid4().hex[:8]}"
        with self._lock:
            if motion and self.bench.estop is not None:
                raise EmergencyStopped(self.bench.estop)
            self._claim(resources, owner)
        try:
            yield
        finally:
            with self._lock:
                self._release(owner)

    # ------------------------------------------------------------------ jobs
    def submit(self, kind: str, fn: JobFn, *, resources: Iterable[str] = RESOURCES,
               steps: Sequence[str] = ()) -> JobInfo:
        """Start ``fn(handle)`` in a worker thread and return its state at once.

        Raises:
            EmergencyStopped: the emergency stop is latched (HTTP 409).
            DeviceBusy: another job holds one of ``resources`` (HTTP 409).
        """
        job_id = uuid.uuid4().hex
        info = JobInfo(id=job_id, kind=kind, state="running", resources=sorted(set(resources)),
                       created=_now(), step=steps[0] if steps else "")
        history = self.history
        with self._lock:
            if self.bench.estop is not None:
                raise EmergencyStopped(self.bench.estop)
            self._claim(info.resources, job_id)
            if "pumps" in info.resources:
                self.bench.cancel.clear()
            if history is not None:
                info.record = str(history.path_for(info))
            handle = JobHandle(info, steps, self._lock, history, self.changed)
            self._jobs[job_id], self._handles[job_id] = info, handle
            thread = threading.Thread(target=self._run, args=(info, handle, fn),
                                      name=f"job-{kind}-{job_id[:8]}", daemon=True)
            self._threads[job_id] = thread
            self._forget_old()
            first = info.model_copy(deep=True)
        if history is not None:
            history.save(first)
        self.changed.set()
        thread.start()
        return self.get(job_id)

    def _run(self, info: JobInfo, handle: JobHandle, fn: JobFn) -> None:
        state: JobState
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        self._local.handle = handle
        if _fine(info.resources):  # jobs on disjoint resources share the bench lock
            owned_by(self.key)
        try:
            out = fn(handle)
            result = out.model_dump(mode="json") if isinstance(out, BaseModel) else out
            state = "cancelled" if handle.cancelled.is_set() else "succeeded"
        except OperationCancelled as exc:
            state, error = "cancelled", describe(exc)
        except Exception as exc:  # noqa: BLE001 - every failure ends in the job's state
            log.warning("job %s (%s) failed: %s", info.id, info.kind, exc)
            self.bench.stop_all()
            state, error = ("cancelled" if handle.cancelled.is_set() else "failed"), describe(exc)
            self._stop_others(info.id)
        with self._lock:
            info.state, info.result, info.error, info.finished = state, result, error, _now()
            if state == "succeeded":
                info.progress = 1.0
            if "pumps" in info.resources:
                self.bench.cancel.clear()
            self._release(info.id)
            self._handles.pop(info.id, None)
            self._threads.pop(info.id, None)
            last = info.model_copy(deep=True)
        if self.history is not None:
            self.history.save(last)
        self.changed.set()

    def cancel(self, job_id: str) -> JobInfo:
        """Ask a running job to stop; its pumps stop at once. Finished jobs are returned as is.

        Raises:
            KeyError: unknown job id (HTTP 404).
        """
        with self._lock:
            info = self._jobs[job_id]
            handle = self._handles.get(job_id)
            if handle is not None:
                self._request_cancel(info, handle)
        return self.get(job_id)

    def _request_cancel(self, info: JobInfo, handle: JobHandle) -> None:
        handle.cancelled.set()
        info.cancel_requested = True
        if "pumps" in info.resources:
            self.bench.cancel.set()
            self.bench.stop_all()
            return
        for resource in info.resources:  # a plan's claims: stop its own pumps only
            pump = self.bench.pumps.get(resource[5:]) if resource.startswith("pump:") else None
            if pump is not None:
                try:
                    pump.stop()
                except Exception:  # stop the rest; the failure is logged
                    log.exception("could not stop pump %s", pump.name)
                    self.bench.stop_all()

    def _stop_others(self, failed: str) -> None:
        """After a job failed (every pump already stopped): cancel every other running job."""
        with self._lock:
            for job_id, handle in list(self._handles.items()):
                if job_id != failed:
                    log.warning("job %s cancelled: job %s failed", job_id, failed)
                    self._request_cancel(self._jobs[job_id], handle)

    def emergency_stop(self, reason: str) -> list[str]:
        """Latch the bench's emergency stop, stop every pump, cancel every running job.

        Returns:
            Ids of the jobs asked to cancel.
        """
        self.bench.emergency_stop(reason)
        with self._lock:
            running = [(self._jobs[j], h) for j, h in self._handles.items()]
            for info, handle in running:
                self._request_cancel(info, handle)
        return [info.id for info, _ in running]

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every running job and wait up to ``timeout`` s for their threads."""
        with self._lock:
            for job_id, handle in list(self._handles.items()):
                self._request_cancel(self._jobs[job_id], handle)
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)
        self.bench.stop_all()

    def _forget_old(self) -> None:
        finished = [j for j, i in self._jobs.items() if i.state != "running"]
        for job_id in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[job_id]
