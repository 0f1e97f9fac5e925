"""The FINALES2 tenant worker: poll → check → reserve → re-read → run → journal → re-read → post.

One :class:`Tenant` serves the capabilities of one bench (``density``/
``vibrating_tube_densimetry`` and ``electrolyte``/``flow``) for as long as it is left running.
What it guarantees, and how (the broker's quirks are numbered as in shared docs
``finales2_api.md``):

* **Only what the bench can really serve is reserved** (quirk 7): every pending request is
  checked by :func:`asab.broker.capabilities.check_request` (schema, chemicals, exact makeable
  region, temperature, volume, stock left, a free vial) before it is reserved.
* **Nothing is served twice** (quirks 3, 5): a request whose result was measured is in the
  journal's served set and is never taken again, whatever the broker shows. Before any post the
  broker's results are searched for our ``internal_reference``; a found one is journalled as
  posted instead of posting again.
* **Nothing is lost**: the full result body is journalled (``measured``) before it is posted;
  results that could not be posted are posted on a later cycle or after a restart.
* **The hardware never waits on the broker** (quirk 10): the broker is not called between the
  ``running`` mark and the ``measured`` mark; a broker outage only delays posting.
* **Reservation is not exclusive** (quirk 4): the request is read again right before wet work
  and right before posting. A request retracted before wet work is not started; one retracted
  during the run keeps its result in the journal, posted only with the explicit policy
  ``retracted = "unsolicited"`` (as an unsolicited result).
* **A request nobody can serve comes back forever** (quirk 6): failures are counted per request
  in the journal; after ``max_failures`` the request is skipped and reported. Stops of the
  tenant during a job (SIGKILL, power cut) are counted apart (``max_interruptions``), so a
  restart does not use up a request's failure budget but a request that keeps crashing the
  worker is still dropped.
* **Nothing stays reserved forever**: ``reserved`` is journalled *before* the broker is told,
  and a request held by the tenant (:func:`~asab.broker.tenant_state.held_requests`: reserved
  and since neither given back, measured nor skipped) is given back on restart and retried on
  every cycle if giving it back failed.
* **Restart** (:meth:`Tenant.resume`; any SIGKILL point is covered): a request journalled
  ``running`` when the process died gets a ``failed`` event marked ``interrupted`` and is given
  back as pending with a message after the bench has been recovered (sample drained, lines
  cleaned); one that was only ``reserved`` (or failed/refused but not yet given back) is given
  back too; measured results are looked up on the broker and posted only if not found.
* **Vials** (``vials.json``): a vial still ``filling`` at restart belongs to a job that died.
  If its delivery had not started (the tenant marks ``delivering`` when it does) the vial is
  certainly empty and is released; otherwise it may hold part of an electrolyte and is marked
  ``failed``: it stays occupied until an operator empties it (``asab vials --release``). The
  give-back message names the vial either way.

A result is measured at most once per request; the *wet work* of a request can run again when
the tenant died after the job but before ``measured`` was journalled (that attempt produced no
result and was given back).

A job that failed *after* the instrument measured (no valid value, or the weighing disagreed)
is a result: it is posted with ``success: false`` and no invented values. A job that failed
before measuring (device fault, routing) counts as a failure and is given back as pending.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from asab.actions.bench import Bench
from asab.actions.job import JobRecord, recover, run_density_job
from asab.actions.pipeline import Pipeline
from asab.actions.vial import FlowJob, FlowRecord, run_flow_job
from asab.actions.vial_state import VialRegistry
from asab.broker.capabilities import CAPABILITIES, Acceptance, check_request
from asab.broker.client import FinalesClient
from asab.broker.journal import SERVED as SERVED_STATES
from asab.broker.journal import Event, Journal, JournalState
from asab.broker.results import ResultError, internal_reference, result_body
from asab.broker.tenant_state import (
    INTERRUPTED,
    attempts,
    held_requests,
    interruptions,
    job_failures,
    journal_summary,
)
from asab.errors import BrokerError
from asab.tasks import CooperativeClock

log = logging.getLogger(__name__)

S = JournalState
FLOW_QUANTITY = "electrolyte"
Progress = Callable[[str, str], None]
"""``progress(request_uuid, step)`` for displays."""


class TenantSettings(BaseModel):
    """How the worker behaves (section ``[tenant]`` of ``broker.toml`` or defaults).

    Attributes:
        poll_interval: s between polls when there was nothing to do.
        max_failures: failed attempts after which a request is skipped for good (quirk 6).
        max_interruptions: tenant stops during a request's job (SIGKILL, power cut) after
            which it is skipped for good (a request that crashes the worker every time).
        retracted: what to do with a result whose request was retracted during the run:
            ``hold`` keeps it in the journal only; ``unsolicited`` posts it as an unsolicited
            result.
        address: postal address of the bench, reported as the vial location of flow results.
    """

    model_config = ConfigDict(extra="forbid")
    poll_interval: float = Field(default=30.0, gt=0, description="s")
    max_failures: int = Field(default=3, ge=1)
    max_interruptions: int = Field(default=5, ge=1)
    retracted: Literal["hold", "unsolicited"] = "hold"
    max_post_refusals: int = Field(default=3, ge=1, description=(
        "posts of one result the broker may refuse before the request is given back (the "
        "result stays in the journal)"))
    address: str | None = None
    pipelined: bool = Field(default=False, description=(
        "prepare the next density request while the current one is measured (asab.actions."
        "pipeline); the next is reserved only once the current one is planned and the one "
        "before it has ended. Off by default until an intermittent end of the SIGKILL soak "
        "with a request left pending (1 run of 19) is understood"))


@dataclass
class CycleReport:
    """What one :meth:`Tenant.cycle` did (request uuids)."""

    seen: int = 0
    served: list[str] = field(default_factory=list)
    posted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    broker_errors: list[str] = field(default_factory=list)
    out_of_service: str | None = None
    waiting: list[str] = field(default_factory=list)
    """Reasons of requests refused because a consumable ran short (the bench waits for the
    operator; they are taken once the ledger says the consumable is back)."""

    @property
    def idle(self) -> bool:
        """Nothing was run or posted (the broker had nothing new for us)."""
        return not (self.served or self.posted or self.failed)


def new_run_id() -> str:
    """A run id unique to one tenant process start: ``tenant-<UTC time>-<8 hex>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"tenant-{stamp}-{uuidlib.uuid4().hex[:8]}"


class Tenant:
    """The worker. Not thread-safe: one tenant per bench and per journal.

    Args:
        bench: the opened bench (real or simulated).
        client: the broker client (logged in lazily).
        journal: the append-only journal; the authoritative record of what happened.
        state_dir: folder for job records (``records/``), raw exports (``raw/``) and the
            vial occupancy (``vials.json``).
        settings: worker behaviour.
        run_id: id of this process's run (default :func:`new_run_id`).
        progress: optional ``progress(request_uuid, step)``.
        bench_file: the bench's ``bench.toml``: named with its folder's hash in
            ``bench.json`` of ``state_dir``, and after each cycle that saved a record the
            folder's ``summary.csv`` and ``plots/`` are rewritten
            (:func:`asab.results.write_folder_outputs`). None: neither.
    """

    def __init__(self, bench: Bench, client: FinalesClient, journal: Journal, state_dir: Path,
                 settings: TenantSettings | None = None, run_id: str | None = None,
                 progress: Progress | None = None, bench_file: Path | None = None) -> None:
        self.bench, self.client, self.journal = bench, client, journal
        self.bench_file = bench_file
        self._saved = False  # a record was saved since the results were last written
        self._pipe: Pipeline | None = None
        self._jobs: list = []  # tasks of the current pipeline
        self._all_jobs: list = []  # tasks of this cycle
        self.state_dir = Path(state_dir)
        self.settings = settings or TenantSettings()
        self.run_id = run_id or new_run_id()
        self.progress = progress
        self.vials = VialRegistry(self.state_dir / "vials.json")
        self.tenant_uuid = client.settings.tenant_uuid
        (self.state_dir / "records").mkdir(parents=True, exist_ok=True)
        (self.state_dir / "raw").mkdir(exist_ok=True)
        journal.check_records(self.state_dir / "records")  # never serve on a lost journal
        if bench_file is not None:
            from asab.results.provenance import BENCH_JSON, bench_provenance

            prov = bench_provenance(bench_file, name=bench.config.name)
            (self.state_dir / BENCH_JSON).write_text(json.dumps(prov, indent=2),
                                                     encoding="utf-8")

    # ------------------------------------------------------------------ loop
    def serve(self, stop: threading.Event | None = None, *, until_idle: bool = False,
              max_cycles: int | None = None) -> list[CycleReport]:
        """Resume, then run cycles until ``stop`` is set (or idle / ``max_cycles``).

        Waits ``settings.poll_interval`` s between idle cycles (interruptible by ``stop``).
        """
        stop = stop or threading.Event()
        reports = [self.resume()]
        while not stop.is_set() and (max_cycles is None or len(reports) <= max_cycles):
            report = self.cycle(stop)
            reports.append(report)
            finished = report.idle and not report.broker_errors and not self._unposted()
            if until_idle and (finished or self.bench.out_of_service):
                break
            if not report.served:  # only a productive cycle goes straight on
                stop.wait(self.settings.poll_interval)
        return reports

    def resume(self) -> CycleReport:
        """After a (re)start: settle stale vials, give back interrupted and held requests, then
        post what is unposted. Safe to be killed and run again at any point."""
        report = CycleReport()
        interrupted = self.journal.in_state(S.RUNNING)
        outcome = "nothing to recover"
        if interrupted:
            outcome = self._recover(interrupted)
            log.warning("tenant restarted during %s; bench recovery: %s", interrupted, outcome)
        notes = self._settle_vials()
        for uid in interrupted:
            message = ("asab tenant restarted during the job; sample drained and lines cleaned; "
                       "request given back" + (f"; {notes[uid]}" if uid in notes else ""))
            self.journal.append(uid, S.FAILED, {
                "why": f"tenant stopped during the job; recovery: {outcome}",
                INTERRUPTED: True, "message": message})
            report.failed.append(uid)
        self._give_back_held(report, restarted=True)
        self._post_unposted(report)
        return report

    def _recover(self, interrupted: list[str]) -> str:
        """Recover the bench after a stop during the jobs of ``interrupted``: a density job's
        cell and lines are drained and cleaned (:func:`~asab.actions.job.recover`); a flow
        job's mixer and line to its vial are rinsed and dried
        (:func:`~asab.actions.job.recover`, kind ``vial``). Both end by making the bench safe."""
        done = []
        for uid in interrupted:
            vial = next((v for v, o in self.vials.occupied().items()
                         if o.request_id == uid and o.status == "filling"), None)
            if self._quantity(uid) == FLOW_QUANTITY and vial is not None:
                done.append(recover(self.bench, "vial", drain_lines=True, vial=vial))
            else:
                done.append(recover(self.bench, "density"))
        return "; ".join(dict.fromkeys(done))

    def _quantity(self, uid: str) -> str | None:
        """The quantity of a request as first seen (journal ``seen`` payload)."""
        for event in self.journal.history(uid):
            if event.state == S.SEEN:
                request = event.payload.get("request", {})
                return (request.get("request") or request).get("quantity")
        return None

    def cycle(self, stop: threading.Event | None = None) -> CycleReport:
        """Post what is unposted, then take every pending request in creation order."""
        report = CycleReport()
        self._give_back_held(report, restarted=False)
        self._post_unposted(report)
        if self.bench.out_of_service:  # take nothing: every job would fail and burn its budget
            log.error("bench out of service (%s): not taking requests", self.bench.out_of_service)
            report.out_of_service = self.bench.out_of_service
            return report
        if self.bench.estop is not None:  # the operator stopped the bench: take nothing
            log.error("emergency stop latched (%s): not taking requests", self.bench.estop)
            report.out_of_service = f"emergency stop latched: {self.bench.estop}"
            return report
        self._cycle_requests(report, stop)
        self._say_waiting(report)
        self._write_results()
        return report

    def _write_results(self) -> None:
        """Rewrite ``summary.csv`` and ``plots/`` when a record was saved (and the bench
        file is known); a failure is logged, never raised."""
        if self._saved and self.bench_file is not None:
            from asab.results import write_folder_outputs

            write_folder_outputs(self.state_dir, self.bench.config)
        self._saved = False

    def _say_waiting(self, report: CycleReport) -> None:
        """Keep in the ledger why the bench waits for the operator (or that it does not)."""
        reason = (f"{len(report.waiting)} request(s) wait for consumables: {report.waiting[0]}"
                  if report.waiting else None)
        if self.bench.ledger.current().waiting != reason:
            def change(ledger) -> None:
                ledger.waiting = reason
            self.bench.ledger.update(change)

    def _cycle_requests(self, report: CycleReport, stop: threading.Event | None) -> None:
        """Take the pending requests; pipelined (``settings.pipelined``, the bench on a
        :class:`~asab.tasks.CooperativeClock`): the cycle runs as a task, each density job as
        a task of a :class:`~asab.actions.pipeline.Pipeline`, and the cycle ends when the
        last job has. After a failure the running jobs end (the failed one recovered, the
        others stopped), then a new pipeline takes the next requests."""
        clock = self.bench.clock
        if not (self.settings.pipelined and isinstance(clock, CooperativeClock)):
            self._take(report, stop)
            return
        self._all_jobs = []
        before = self.bench.task_check
        self._new_pipeline()

        def cycle() -> None:
            try:
                self._take(report, stop)
            finally:
                self._wait_all_ended()
        try:
            task = clock.spawn(cycle, "tenant-cycle")
            clock.join([task])
        finally:
            self.bench.task_check = before
            self._pipe = None
        for t in [task, *self._all_jobs]:
            if t.error is not None:
                raise t.error

    def _new_pipeline(self) -> None:
        self._pipe = Pipeline(self.bench)
        self._jobs = []
        self.bench.task_check = self._pipe.check

    def _wait_all_ended(self) -> None:
        self._pipe.wait_ended(self._jobs)

    def _ready_for(self, flow: bool) -> None:
        """Pipelined: wait until the next job may be reserved — a density job once the last
        one is planned and the one before it has ended, a flow job once every job has ended;
        after a failure, once every job has ended (then a new pipeline starts)."""
        pipe = self._pipe
        if flow:
            self._wait_all_ended()
        else:
            pipe.wait_to_start(len(self._jobs), "the bench to take the next request")
        if pipe.failure is not None or flow:
            self._wait_all_ended()
            self._new_pipeline()

    def _take(self, report: CycleReport, stop: threading.Event | None) -> None:
        for quantity, method in CAPABILITIES:
            try:
                pending = self.client.pending_requests(quantity, method)
            except BrokerError as exc:
                report.broker_errors.append(str(exc))
                log.warning("cannot poll %s/%s: %s", quantity, method, exc)
                continue
            for info in sorted(pending, key=lambda r: (str(r.ctime), r.uuid)):
                if stop is not None and stop.is_set():
                    return
                report.seen += 1
                try:
                    self.consider(info.model_dump(mode="json"), report)
                except BrokerError as exc:  # broker trouble between steps: try again later
                    report.broker_errors.append(str(exc))
                    log.warning("broker error on %s: %s", info.uuid, exc)
                except Exception as exc:  # noqa: BLE001 - one request must not stop the tenant
                    self._unexpected(info.uuid, exc, report)

    def _unexpected(self, uid: str, exc: Exception, report: CycleReport) -> None:
        """A bug or an unforeseen input while handling ``uid``: journal it, make the bench safe
        if wet work had started, give the request back, and go on with the next request."""
        log.exception("unexpected error on request %s", uid)
        why = f"unexpected error: {type(exc).__name__}: {exc}"[:500]
        state = self.journal.state(uid)
        if state == S.RUNNING:
            why += f"; recovery: {recover(self.bench)}"
        if state in (S.RUNNING, S.RESERVED):
            self.journal.append(uid, S.FAILED, {"why": why})
            report.failed.append(uid)
            self._give_back(uid, f"asab could not serve it: {why}", report)
        elif state not in SERVED_STATES:
            self._reject(uid, why, report)

    # ------------------------------------------------------------------ one request
    def consider(self, info: dict[str, Any], report: CycleReport) -> None:
        """Check, reserve, re-read, run and post one pending request (``RequestInfo`` JSON)."""
        uid = str(info.get("uuid", ""))
        if self._skip(uid, report):
            return
        if self.journal.state(uid) is None:
            self.journal.append(uid, S.SEEN, {"request": info})
        acc = check_request(self.bench, info, vials=self.vials)
        if acc.accepted and self._pipe is not None:  # reserve only when it can start
            self._ready_for(flow=isinstance(acc.job, FlowJob))
            acc = check_request(self.bench, info, vials=self.vials)
        if not acc.accepted:
            self._reject(uid, "; ".join(acc.reasons), report)
            if acc.consumables:
                report.waiting.append("; ".join(acc.reasons))
            return
        self._say(uid, "reserve")
        # journalled first: a stop between the two leaves a hold that a restart gives back
        self.journal.append(uid, S.RESERVED, {"run": self.run_id})
        self.client.update_request_status(uid, "reserved", f"reserved by asab ({self.run_id})")
        fresh = self.client.get_request(uid)
        if fresh is None or fresh.status not in ("reserved", "pending"):
            status = "unknown" if fresh is None else fresh.status
            self.journal.append(uid, S.SKIPPED, {"why": f"request is {status} before wet work"})
            report.skipped.append(uid)
            return
        self._run(uid, acc, report)

    def _skip(self, uid: str, report: CycleReport) -> bool:
        state = self.journal.state(uid)
        why = None
        if uid in self.journal.served():
            why = "served before (result measured); never served twice"
        elif (n := job_failures(self.journal, uid)) >= self.settings.max_failures:
            why = f"failed {n} times (limit {self.settings.max_failures})"
        elif (n := interruptions(self.journal, uid)) >= self.settings.max_interruptions:
            why = (f"the tenant stopped {n} times during its job "
                   f"(limit {self.settings.max_interruptions})")
        if why is None:
            return False
        if uid in self.journal.served():  # its journal state stays measured/posted
            log.info("request %s pending again on the broker, not served: %s", uid, why)
        elif state != S.SKIPPED:
            self.journal.append(uid, S.SKIPPED, {"why": why})
            log.warning("request %s skipped: %s", uid, why)
        report.skipped.append(uid)
        return True

    def _reject(self, uid: str, why: str, report: CycleReport) -> None:
        last = self.journal.history(uid)[-1] if self.journal.state(uid) else None
        if last is None or last.state != S.REJECTED or last.payload.get("why") != why:
            self.journal.append(uid, S.REJECTED, {"why": why})
            report.rejected.append(uid)  # a re-check with the same verdict is not counted

    def _run(self, uid: str, acc: Acceptance, report: CycleReport) -> None:
        attempt = attempts(self.journal, uid) + 1
        reference = internal_reference(self.run_id, uid, attempt)
        job_id = f"{uid[:8]}-{attempt}"
        self.journal.append(uid, S.RUNNING, {"reference": reference, "attempt": attempt})
        self._say(uid, "running")
        if self._pipe is not None and not isinstance(acc.job, FlowJob):
            self._run_pipelined(uid, acc, report, job_id, reference)
            return
        self._finish(uid, self._wet_work(acc, job_id), reference, report)

    def _run_pipelined(self, uid: str, acc: Acceptance, report: CycleReport, job_id: str,
                       reference: str) -> None:
        """Start the job as a task of the pipeline; it finishes (records, journals, posts) on
        its own, and this returns once it is planned and the next may be considered."""
        pipe, n = self._pipe, len(self._jobs)
        sample = f"{self.run_id}_{job_id}".replace(":", "-")

        def job() -> None:
            try:
                record = run_density_job(self.bench, acc.job, job_id, sample=sample,
                                         pipeline=(pipe, n))
                pipe.settled.add(n)
                if record.requeued:  # stopped before mixing by another job's failure
                    self._give_back(uid, f"asab {record.reason}; request given back",
                                    report)
                    return
                self._finish(uid, record, reference, report)
            except BrokerError as exc:  # broker trouble after the job: a later cycle posts
                report.broker_errors.append(str(exc))
                log.warning("broker error on %s: %s", uid, exc)
            except Exception as exc:  # noqa: BLE001 - one request must not stop the tenant
                pipe.fail(n, None, exc)  # every other task stops before the recovery moves
                pipe.quiesce()
                self._unexpected(uid, exc, report)
        task = self.bench.clock.spawn(pipe.job_task(n, job), f"request-{uid[:8]}")
        self._jobs.append(task)
        self._all_jobs.append(task)

    def _finish(self, uid: str, record: JobRecord | FlowRecord, reference: str,
                report: CycleReport) -> None:
        """Save, judge, journal and post what a job made."""
        self._save(record)
        if record.status == "rejected":  # e.g. stock ran short since the check
            self._reject(uid, record.reason or "refused by the bench", report)
            self._give_back(uid, f"asab cannot serve it now: {record.reason}", report)
            return
        if record.status == "failed" and self.bench.estop is not None:
            # stopped by the operator: not the request's fault, no failure counted
            self._give_back(uid, f"asab job interrupted by an emergency stop ({self.bench.estop})",
                            report)
            return
        if record.status == "failed" and getattr(record, "preempted", False):
            # stopped because another job failed: not the request's fault, no failure counted
            self._give_back(uid, f"asab {record.reason}; request given back", report)
            return
        try:
            if record.status == "failed" and not _has_outcome(record):
                raise ResultError("nothing was measured or delivered")
            body = result_body(record, self.bench.config, tenant_uuid=self.tenant_uuid,
                               reference=reference, address=self.settings.address)
        except ResultError as exc:
            why = f"{record.reason or 'job failed'} (no result: {exc})"
            self.journal.append(uid, S.FAILED, {"why": why, "record": record.job_id})
            report.failed.append(uid)
            self._give_back(uid, f"asab job failed: {record.reason}", report)
            return
        self.journal.append(uid, S.MEASURED, {"result": body, "reference": reference,
                                              "record": record.job_id})
        report.served.append(uid)
        try:
            self._post(uid, body, reference, report, first_attempt=True)
        except BrokerError as exc:  # the result waits in the journal for a later cycle
            report.broker_errors.append(str(exc))
            log.warning("posting %s deferred: %s", uid, exc)

    def _wet_work(self, acc: Acceptance, job_id: str) -> JobRecord | FlowRecord:
        sample = f"{self.run_id}_{job_id}".replace(":", "-")
        if isinstance(acc.job, FlowJob):
            return run_flow_job(self.bench, acc.job, job_id, self.vials)
        return run_density_job(self.bench, acc.job, job_id, sample=sample)

    # ------------------------------------------------------------------ posting
    def _post_unposted(self, report: CycleReport) -> None:
        for event in self._unposted():
            try:
                self._post(event.request_uuid, event.payload["result"],
                           event.payload.get("reference", ""), report)
            except BrokerError as exc:
                report.broker_errors.append(str(exc))
                log.warning("posting %s deferred: %s", event.request_uuid, exc)

    def _unposted(self) -> list:
        """Measured results still to post: the request's latest event is ``measured`` or
        ``refused`` — or a result held for a retracted request, when the policy is now
        ``unsolicited``."""
        out = []
        for event in self.journal.unposted():
            last = self.journal.history(event.request_uuid)[-1]
            held = last.state == S.SKIPPED and last.payload.get("held")
            if last.state in (S.MEASURED, S.REFUSED) or (
                    held and self.settings.retracted == "unsolicited"):
                out.append(event)
        return out

    def _post(self, uid: str, body: dict[str, Any], reference: str, report: CycleReport, *,
              first_attempt: bool = False) -> None:
        """Post ``body`` unless the broker already holds it; journal the outcome.

        ``first_attempt``: this process journalled the result just now and has not tried to
        post it, so the journal decides that the broker cannot hold it and no look-up is
        made. Any other post (after a restart, a network error, a refusal) first asks the
        broker (:meth:`_find_posted`).

        Raises:
            BrokerError: transient trouble; the result stays ``measured`` for a later cycle.
        """
        fresh = self.client.get_request(uid)
        if fresh is not None and fresh.status == "retracted":
            self._retracted(uid, body, reference, report)
            return
        found = None if first_attempt else self._find_posted(uid, body, reference)
        if found is not None:
            self.journal.append(uid, S.POSTED, {"result_uuid": found, "found_on_broker": True})
            report.posted.append(uid)
            return
        try:
            result_uuid = self.client.post_result(body)
        except BrokerError as exc:
            if exc.permanent:
                self._refused(uid, exc, report)
                return
            raise
        self.journal.append(uid, S.POSTED, {"result_uuid": result_uuid})
        report.posted.append(uid)
        self._say(uid, "posted")

    def _refused(self, uid: str, exc: BrokerError, report: CycleReport) -> None:
        """The broker refused a locally validated result (e.g. a 500 text/plain, which a
        crashing broker also answers): keep it for later cycles; after
        ``max_post_refusals`` give the request back (the result stays in the journal)."""
        self.journal.append(uid, S.REFUSED, {"why": str(exc)[:500], "status": exc.status})
        n = sum(1 for e in self.journal.history(uid) if e.state == S.REFUSED)
        log.warning("broker refused the result of %s (%d/%d): %s", uid, n,
                    self.settings.max_post_refusals, exc)
        if n < self.settings.max_post_refusals:
            report.broker_errors.append(str(exc))
            return
        self.journal.append(uid, S.SKIPPED, {"why": f"the broker refused the result {n} times "
                                             f"({exc}); kept in the journal"})
        report.skipped.append(uid)
        self._give_back(uid, f"asab's result was refused by the broker {n} times; given back",
                        report)

    def _retracted(self, uid: str, body: dict[str, Any], reference: str,
                   report: CycleReport) -> None:
        if self.settings.retracted == "unsolicited":
            found = self._find_posted(uid, body, reference)
            result_uuid = found or self.client.post_unsolicited_result(body)
            self.journal.append(uid, S.POSTED, {"result_uuid": result_uuid, "unsolicited": True})
            report.posted.append(uid)
            return
        self.journal.append(uid, S.SKIPPED, {
            "why": "request retracted during the run; result kept in the journal (policy 'hold')",
            "held": True})
        report.skipped.append(uid)

    def _find_posted(self, uid: str, body: dict[str, Any], reference: str) -> str | None:
        """The uuid of a result on the broker for ``uid`` carrying our ``reference``, or None.

        Asks for the request's own result (``GET /results_requested/{id}``, which answers the
        FIRST result stored for the request, whatever its status): no result means ours was
        not stored; the first one carrying our reference is ours. Only when the first result
        is somebody else's (another tenant served it too, quirk 4) could ours be a later one:
        then, and only then, the capability's whole result list is searched.
        """
        if not reference:
            return None
        first = self.client.result_for_request(uid)
        if first is None:
            return None
        if _reference_of(first) == reference:
            return first.uuid
        method = body["method"][0]
        for info in self.client.results_requested(body["quantity"], method):
            if info.result.request_uuid == uid and _reference_of(info) == reference:
                return info.uuid
        return None

    # ------------------------------------------------------------------ holds and vials
    def _give_back_held(self, report: CycleReport, *, restarted: bool) -> None:
        """Give back every request still held (see :func:`held_requests`) except one whose job
        is running; ``restarted``: called by :meth:`resume` (nothing runs any more)."""
        for uid, last in held_requests(self.journal).items():
            if last.state == S.RUNNING:
                continue
            self._give_back(uid, _give_back_message(last, restarted), report)

    def _settle_vials(self) -> dict[str, str]:
        """Settle vials left ``filling`` by a job that died; returns request uuid → note."""
        notes: dict[str, str] = {}
        for vial, occupant in self.vials.occupied().items():
            if occupant.status != "filling":
                continue
            if occupant.delivering:
                self.vials.update(vial, status="failed", time=_now())
                notes[occupant.request_id] = (f"vial {vial} may hold part of the electrolyte: "
                                              "marked failed, to be emptied by an operator")
            else:
                self.vials.release(vial)
                notes[occupant.request_id] = f"vial {vial} released (nothing reached it)"
            log.warning("vial %s of stopped job %s: %s", vial, occupant.job_id,
                        notes[occupant.request_id])
        return notes

    # ------------------------------------------------------------------ helpers
    def _give_back(self, uid: str, message: str, report: CycleReport) -> None:
        try:
            self.client.update_request_status(uid, "pending", message)
        except BrokerError as exc:  # it stays reserved on the broker; journal says why
            report.broker_errors.append(str(exc))
            log.warning("could not give %s back: %s", uid, exc)
            return
        self.journal.append(uid, S.GIVEN_BACK, {"why": message})

    def _save(self, record: JobRecord | FlowRecord) -> None:
        path = self.state_dir / "records" / f"{record.job_id}.json"
        measurement = getattr(record, "measurement", None)
        if measurement is not None:
            raw = self.state_dir / "raw" / Path(measurement.raw_file).name
            tmp = raw.with_name(raw.name + ".tmp")
            with tmp.open("w", encoding="utf-8", newline="") as fh:
                fh.write(measurement.raw_text)
            tmp.replace(raw)
            measurement.raw_file = f"raw/{raw.name}"  # relative to the tenant folder
        tmp = path.with_suffix(".tmp")
        tmp.write_text(record.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(path)
        self._saved = True

    def _say(self, uid: str, step: str) -> None:
        log.info("request %s: %s", uid, step)
        if self.progress:
            self.progress(uid, step)


def _has_outcome(record: JobRecord | FlowRecord) -> bool:
    """Whether a failed job still produced something to report (a measurement, or liquid
    in the vial); a job that failed before that is given back instead of answered."""
    if isinstance(record, FlowRecord):
        return bool(record.volume_delivered)
    return record.measurement is not None


def _give_back_message(last: Event, restarted: bool) -> str:
    """The status-change message for giving back a held request whose latest event is
    ``last`` (a :class:`~asab.broker.journal.Event`)."""
    why = last.payload.get("why")
    if last.payload.get("message"):
        return str(last.payload["message"])
    if last.state == S.FAILED:
        return f"asab job failed: {why}"
    if last.state == S.REJECTED:
        return f"asab cannot serve it now: {why}"
    if restarted:
        return "asab tenant restarted before starting the job; request given back"
    return "asab could not start the job (broker trouble); request given back"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


__all__ = ["CycleReport", "Tenant", "TenantSettings", "journal_summary", "new_run_id"]


def _reference_of(info: Any) -> str | None:
    """``run_info.internal_reference`` of a stored result, or None."""
    result = info.result.model_dump(mode="json")
    return (result.get("data") or {}).get("run_info", {}).get("internal_reference")
