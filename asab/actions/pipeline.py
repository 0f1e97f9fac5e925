"""Pipelined execution: the steps of several job plans run at once where their resources allow.

The rule of :mod:`asab.plan.schedule` decides (each step waits for the earlier holders of its
resources, in queue order); this module carries it out on the bench. Every step is a task of a
:class:`~asab.tasks.CooperativeClock` (one runs at a time; the bench clock advances only when
all wait), started when the steps it depends on have finished. While a step runs it owns the
valves its routes set: a second step that needs one of them while it runs is a scheduler bug
and is refused (:class:`~asab.actions.safety.SafetyError`) before anything switches.

Failure: the first step that fails stops every pump at once (:meth:`Bench.stop_all`) and
every other step task (their next :meth:`Bench.checkpoint` raises :class:`Preempted`; steps
not started never start). The failed job is then recovered by its own job thread as in a
sequential run, after the other steps have stopped; the other jobs are told they were
preempted (:attr:`Pipeline.failure`) and decide: not mixed yet → back to the queue; mixed →
failed with the reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from asab.actions.bench import Bench, OperationCancelled, owned_by
from asab.actions.executor import Event, EventKind, Execution, Listener, run_step
from asab.ledger.model import BenchLedger
from asab.plan.effects import Edges, apply_step
from asab.plan.schedule import Dependencies
from asab.plan.steps import Dispense, Fill, JobPlan, Phase, Purpose
from asab.tasks import CooperativeClock, Task

log = logging.getLogger(__name__)


RECOVERY_MOVES = 40
"""Moves a recovery plan is allowed for the wait bound (a density recovery on the 2023 bench
has about 20: drain strokes, clean strokes, their refills, the parking of valves)."""


class Preempted(OperationCancelled):
    """A step of a pipelined run was stopped (or never started) because another step failed
    or the emergency stop was pressed."""


class Pipeline:
    """The jobs of one pipelined stretch of a run, their steps and what has finished.

    Args:
        bench: the opened bench; its clock must be a :class:`CooperativeClock`.

    Attributes:
        deps: the dependency graph of the plans added so far.
        plans: job index → plan.
        done: (job, step) of every finished step.
        failure: (job, step, error) of the first failure (step None: the job failed after its
            steps, e.g. a weighing judged short), or None.
        settled: jobs planned (or ended without a plan).
        finished: jobs whose thread has ended.
    """

    def __init__(self, bench: Bench) -> None:
        if not isinstance(bench.clock, CooperativeClock):
            raise TypeError("a pipelined run needs the bench on a CooperativeClock")
        self.bench = bench
        self.clock: CooperativeClock = bench.clock
        self.deps = Dependencies(bench.config)
        self.plans: dict[int, JobPlan] = {}
        self.done: set[tuple[int, int]] = set()
        self.running: dict[tuple[int, int], frozenset[str]] = {}
        self.failure: tuple[int, int, BaseException] | None = None
        self.settled: set[int] = set()
        self.finished: set[int] = set()
        self.key = object()
        self.names: dict[int, str] = {}
        self._local = threading.local()
        self._edges = Edges.of(bench.config)

    # ------------------------------------------------------------------ queue side
    def add(self, job: int, plan: JobPlan) -> None:
        """Queue ``plan`` as job ``job`` (jobs in increasing order)."""
        self.deps.add(job, plan)
        self.plans[job] = plan
        self.settled.add(job)

    def predicted_ledger(self) -> BenchLedger:
        """The ledger as every queued plan leaves it (steps not finished yet applied to a copy
        of the bench ledger, in queue order): what the next plan is sized from."""
        out = self.bench.ledger.current().clone()
        for job in sorted(self.plans):
            for i, step in enumerate(self.plans[job].steps):
                if (job, i) not in self.done:
                    apply_step(out, self._edges, step)
        return out

    def busy(self) -> bool:
        """Some step is running."""
        return bool(self.running)

    def budget(self) -> float:
        """s a task may wait for others: twice what the unfinished plans are expected to take,
        plus twice the longest plan and one ``pump_timeout``; after a failure also
        :data:`RECOVERY_MOVES` × ``pump_timeout`` for the recovery (every one of its moves is
        bounded by that). Every wait has a timeout; waits pass this method, asked again as
        plans are queued."""
        left = sum(p.duration for j, p in self.plans.items() if j not in self.finished)
        longest = max((p.duration for p in self.plans.values()), default=0.0)
        timeout = self.bench.config.settings.pump_timeout
        recovery = RECOVERY_MOVES * timeout if self.failure is not None else 0.0
        return 2.0 * (left + longest) + timeout + recovery

    def name(self, job: int) -> str:
        """What job ``job`` is called in messages (its record's job id when known)."""
        return self.names.get(job, f"job {job + 1} of the pipeline")

    def check(self) -> None:
        """:attr:`Bench.task_check`: raise :class:`Preempted` in a step task after a failure."""
        if self.failure is not None and getattr(self._local, "step", None) is not None:
            job, _, exc = self.failure
            raise Preempted(f"stopped: {self.name(job)} failed ({exc})")

    def check_planning(self) -> None:
        """Raise :class:`Preempted` when a job failed: a job about to be planned is not (it
        goes back to the queue; the predicted ledger would count the failed job's steps)."""
        if self.failure is not None:
            job, _, exc = self.failure
            raise Preempted(f"not planned: {self.name(job)} failed ({exc})")

    def fail(self, job: int, step: int | None, exc: BaseException) -> None:
        """Record the first failure and stop every pump."""
        if self.failure is None:
            self.failure = (job, step, exc)
            log.error("pipelined run: %s failed at step %s (%s); stopping every task",
                      self.name(job), step, exc)
        self.bench.stop_all()

    def quiesce(self) -> None:
        """Wait until no step runs (after a failure, before the recovery moves anything)."""
        self.clock.block(lambda: not self.running, self.budget, "every step to stop")

    # ------------------------------------------------------------------ admission
    def may_start(self, n: int) -> bool:
        """Job ``n`` may be started (its request taken): job n−1 is planned and job n−2 has
        ended (never more than one job ahead of the bench) — or a job failed."""
        return self.failure is not None or (
            (n == 0 or n - 1 in self.settled) and (n < 2 or n - 2 in self.finished))

    def wait_to_start(self, n: int, what: str) -> bool:
        """Wait (bench time) until :meth:`may_start`; False when a job failed meanwhile."""
        self.clock.block(lambda: self.may_start(n), self.budget, what)
        return self.failure is None

    def wait_ended(self, tasks: list[Task], what: str = "the running jobs to end") -> None:
        """Wait (bench time) until every task of ``tasks`` has ended."""
        self.clock.block(lambda: all(t.done.is_set() for t in tasks), self.budget, what)

    def job_task(self, n: int, fn: Callable[[], None]) -> Callable[[], None]:
        """``fn`` as job ``n``'s task: it holds the bench lock with the pipeline's other
        tasks, and job ``n`` counts as planned and ended when ``fn`` returns or raises."""
        def run() -> None:
            owned_by(self.key)
            try:
                fn()
            finally:
                self.settled.add(n)
                self.finished.add(n)
        return run

    # ------------------------------------------------------------------ job side
    def execute(self, job: int, plan: JobPlan, out: Execution,
                listener: Listener | None = None) -> None:
        """Run ``plan``'s steps as tasks (each when its dependencies finished), filling
        ``out``; returns when all ended.

        Raises:
            The first error of this job's steps; :class:`Preempted` when another job's step
            failed first.
        """
        marks: dict[int, list[Phase]] = {}
        for mark in plan.phases:
            marks.setdefault(mark.step, []).append(mark.phase)
        vial = {i for p in plan.pushes_for(Purpose.VIAL) for i in p.steps}
        tasks = [self.clock.spawn(self._step_task(job, i, plan, out, marks, vial, listener),
                                  f"job{job + 1}-step{i}") for i in range(len(plan.steps))]
        self.wait_ended(tasks, f"the steps of {self.name(job)}")
        for p in marks.get(len(plan.steps), []):
            out.phases.append((p, self.clock.now()))
        errors = [t.error for t in tasks if t.error is not None]
        own = [e for e in errors if not isinstance(e, Preempted)]
        if own:
            raise own[0]
        if errors:
            raise errors[0]

    def _step_task(self, job: int, index: int, plan: JobPlan, out: Execution,
                   marks: dict[int, list[Phase]], vial: set[int],
                   listener: Listener | None) -> Callable[[], None]:
        step = plan.steps[index]
        ref = (job, index)

        def emit(kind: EventKind, phase: Phase) -> None:
            if listener is not None:
                listener(Event(kind, index, phase, self.clock.now()))

        def run() -> None:
            owned_by(self.key)
            self._local.step = ref
            try:
                self._wait_for(ref)
            except BaseException as exc:  # a wait that timed out, a valve held: stop all
                if not isinstance(exc, Preempted):
                    self.fail(job, index, exc)
                raise
            for p in marks.get(index, []):
                out.phases.append((p, self.clock.now()))
                emit(EventKind.PHASE, p)
            if isinstance(step, (Fill, Dispense)) and not out.liquid_moved:
                out.liquid_moved = True
                emit(EventKind.LIQUID_MOVED, step.phase)
            if index in vial and not out.delivery_began:
                out.delivery_began = True
                emit(EventKind.DELIVERY_BEGAN, step.phase)
            began = self.clock.now()
            self.running[ref] = self._valves(ref)
            try:
                run_step(self.bench, step, out)
            except BaseException as exc:
                out.times[index] = (began, self.clock.now())
                if out.failed is None:
                    out.failed = index
                if not isinstance(exc, Preempted):
                    self.fail(job, index, exc)
                emit(EventKind.STEP_FAILED, step.phase)
                raise
            finally:
                self.running.pop(ref, None)
            out.times[index] = (began, self.clock.now())
            out.done.append(index)
            self.done.add(ref)
            emit(EventKind.STEP_DONE, step.phase)
        return run

    def _valves(self, ref: tuple[int, int]) -> frozenset[str]:
        return frozenset(r for r in self.deps.held[ref] if r.startswith("valve:"))

    def _wait_for(self, ref: tuple[int, int]) -> None:
        from asab.actions.safety import SafetyError

        deps = self.deps.deps[ref]
        self.clock.block(lambda: self.failure is not None or all(d in self.done for d in deps),
                         self.budget, f"the resources of step {ref[1]} of {self.name(ref[0])}")
        self.check()
        mine = self._valves(ref)
        for other, valves in self.running.items():
            if valves & mine:
                shared = ", ".join(sorted(valves & mine))
                text = (f"step {ref[1]} of {self.name(ref[0])} needs {shared}, held by step "
                        f"{other[1]} of {self.name(other[0])}")
                raise SafetyError([text])
