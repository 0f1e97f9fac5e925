"""Several tasks on one bench clock, one at a time: the pipelined scheduler's time base.

:class:`CooperativeClock` wraps any :class:`~asab.clock.Clock` (the simulators' virtual clock,
their real-time clock, the wall clock). Each task is a thread started with
:meth:`CooperativeClock.spawn`; exactly one task runs at a time, and it hands the bench over
only when it waits, through :meth:`sleep` (every driver, action and poll already waits that
way, :func:`asab.clock.poll_until`) or :meth:`block` (waiting for another task). The task
that runs next is the one whose wait ends first; ties go to the task that began waiting
first. On a virtual clock, time therefore advances only when every task waits, and by the
smallest wait left, so two steps that overlap are counted once; the same input gives the
same order of every command. On a real clock the same rule applies with real waits, and
driver calls never run in two threads at once.

Why not SimPy or an asyncio loop with virtual time: both need every wait to be a
``yield``/``await`` in the task's own code, while asab's drivers are plain blocking code
that waits through ``Clock.sleep`` deep inside a serial exchange or a poll; this class turns
those waits into the scheduling points instead (README, design notes).

A thread that sleeps on this clock without being a task (a server's request thread, a
test's main thread) waits its turn as a task would for that one sleep, then runs on
alongside the tasks: it is not held to the one-at-a-time rule.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from asab.clock import Clock, RealClock
from asab.errors import WaitTimeout


@dataclass(eq=False)
class Task:
    """One thread run by a :class:`CooperativeClock`.

    Attributes:
        name: for logs and errors.
        result: what the task's function returned.
        error: what it raised (None when it returned).
        done: set once the function ended.
    """

    name: str
    fn: Callable[[], object]
    result: object = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    start: _Waiter | None = None


@dataclass
class _Waiter:
    seq: int
    until: float | None = None          # wake-up time (sleep, or a block's timeout)
    ready: Callable[[], bool] | None = None  # a block's condition
    go: threading.Event = field(default_factory=threading.Event)  # set when it may run


REAL_SLICE = 0.02
"""Wall s of one real-time sleep slice (:class:`CooperativeClock`): the longest a thread that
begins a shorter wait meanwhile waits too long."""


class CooperativeClock:
    """Runs tasks one at a time on ``base`` (see the module's docstring).

    Args:
        base: the clock underneath; ``now()`` is its time, and the running task's waits
            become ``base.sleep`` calls of the time to the next wake-up.
        slice: on a real-time base, the longest single ``base.sleep`` in bench s: between
            slices a wait that ends sooner (a thread that began waiting meanwhile) goes first.
            Default: :data:`REAL_SLICE` wall s × the base's ``speed`` when the base runs in
            real time (it has a ``speed``, or is :class:`~asab.clock.RealClock`), else none
            (a virtual clock's sleep takes no wall time).
    """

    def __init__(self, base: Clock, slice: float | None = None) -> None:
        self.base = base
        if slice is None and (isinstance(base, RealClock) or hasattr(base, "speed")):
            slice = REAL_SLICE * float(getattr(base, "speed", 1.0))
        self.slice = slice
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._waiting: dict[object, _Waiter] = {}  # task (or thread ident) → what it waits for
        self._running: object | None = None         # the task (or thread ident) that may run
        self._local = threading.local()
        self._tasks: list[Task] = []

    # ------------------------------------------------------------------ Clock protocol
    def now(self) -> float:
        return self.base.now()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of bench time; the next task runs meanwhile."""
        self._wait(_Waiter(next(self._seq), until=self.now() + max(0.0, float(seconds))))

    # ------------------------------------------------------------------ tasks
    def block(self, ready: Callable[[], bool], timeout: float | Callable[[], float],
              what: str) -> None:
        """Wait until ``ready()`` is true (checked each time another task waits or ends).

        ``ready`` must be quick and must not wait; it runs in whichever task hands over.
        ``timeout`` (s of bench time from the call) may be a function, asked again when it
        runs out (a wait whose bound grows as work is queued).

        Raises:
            asab.errors.WaitTimeout: still not ready after the timeout (every wait has one,
                so tasks waiting for each other end there, never in a deadlock).
        """
        if ready():
            return
        start = self.now()
        limit = timeout if callable(timeout) else (lambda: timeout)
        while True:
            waiter = _Waiter(next(self._seq), until=start + limit(), ready=ready)
            self._wait(waiter)
            if ready():
                return
            if self.now() >= start + limit() - 1e-9:
                raise WaitTimeout("scheduler", what, limit())

    def spawn(self, fn: Callable[[], object], name: str) -> Task:
        """Start ``fn`` as a task. Called from a task, the new task first runs when the caller
        waits; called from outside, tasks first run once :meth:`join` is called (so tasks
        spawned together start in the order they were spawned, at the same bench time)."""
        task = Task(name=name, fn=fn)
        task.thread = threading.Thread(target=self._main, args=(task,), name=f"task-{name}",
                                       daemon=True)
        task.start = _Waiter(next(self._seq), ready=lambda: True)
        with self._cv:
            self._tasks.append(task)
            self._waiting[task] = task.start
        task.thread.start()
        return task

    def join(self, tasks: list[Task], timeout: float | None = None) -> None:
        """Wait (in wall-clock time, outside the tasks) until every task of ``tasks`` ended."""
        with self._cv:
            if self._running is None and self._waiting:
                self._hand_over()
        for task in tasks:
            task.done.wait(timeout)

    # ------------------------------------------------------------------ internals
    def _main(self, task: Task) -> None:
        self._local.key = task
        try:
            self._until_due(task, task.start)
            task.result = task.fn()
        except BaseException as exc:  # noqa: BLE001 - kept for the caller
            task.error = exc
        finally:
            with self._cv:
                self._tasks.remove(task)
                task.done.set()  # before handing over: a task waiting for this one sees it
                if self._running is task:
                    self._running = None
                    self._hand_over()

    def _wait(self, waiter: _Waiter) -> None:
        me = getattr(self._local, "key", None) or threading.get_ident()
        with self._cv:
            self._waiting[me] = waiter
            if self._running is None or self._running == me:
                self._running = None
                self._hand_over()
        self._until_due(me, waiter)
        if not isinstance(me, Task):  # a thread outside the tasks does not hold the bench
            with self._cv:
                if self._running == me:
                    self._running = None
                    self._hand_over()

    def _until_due(self, me: object, waiter: _Waiter) -> None:
        """Wait to be chosen, then (holding the bench) sleep on the base clock until the wait
        is due; on a real-time base in slices, giving the bench back when a wait that ends
        sooner began meanwhile."""
        while True:
            waiter.go.wait()
            if waiter.ready is not None and _is_ready(waiter):
                return
            delay = (waiter.until - self.base.now()) if waiter.until is not None else 0.0
            if delay <= 0:
                return
            if self.slice is None:
                self.base.sleep(delay)
                return
            self.base.sleep(min(delay, self.slice))
            with self._cv:
                if self._sooner_than(waiter):
                    waiter.go.clear()
                    self._waiting[me] = waiter
                    self._running = None
                    self._hand_over()

    def _sooner_than(self, waiter: _Waiter) -> bool:
        """Some other waiter is ready, or due before ``waiter`` (condition held)."""
        for other in self._waiting.values():
            if other.ready is not None and _is_ready(other):
                return True
            if other.until is not None and (other.until, other.seq) < (waiter.until, waiter.seq):
                return True
        return False

    def _grant(self, key: object) -> None:
        """Let ``key``'s waiter run (condition held); it sleeps until it is due itself."""
        self._running = key
        self._waiting.pop(key).go.set()

    def _hand_over(self) -> None:
        """Choose who runs next (called with the condition held and nobody running): a
        ready block first (in the order the waits began), else the wait due first."""
        ready = [(w.seq, t) for t, w in self._waiting.items() if w.ready is not None
                 and _is_ready(w)]
        if ready:
            self._grant(min(ready)[1])
            return
        timed = [(w.until, w.seq, t) for t, w in self._waiting.items() if w.until is not None]
        if timed:  # every sleep and every block has a time; a start is always ready
            self._grant(min(timed)[2])


def _is_ready(waiter: _Waiter) -> bool:
    """A block's condition; one that raises counts as ready, so that its own task wakes and
    meets the error (:meth:`CooperativeClock.block` asks again there)."""
    try:
        return bool(waiter.ready())
    except Exception:  # noqa: BLE001 - raised again in the waiting task
        return True


__all__ = ["CooperativeClock", "Task"]
