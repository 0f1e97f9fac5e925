"""The tenant loses nothing and serves nothing twice when it is killed at any point.

Two parts:

* **crash points, in-process** (fast, deterministic): a :class:`Killed` exception (a
  ``BaseException``, so no handler of the worker swallows it, as with SIGKILL nothing after it
  runs) is raised at each dangerous point — after the broker reserved but before wet work,
  before the journal's ``reserved``, mid-job, between ``measured`` and the post, after the
  broker stored the result but before ``posted``, after a failed job before its give-back, in a
  flow job before and during the delivery into the vial — and a new :class:`Tenant` on the same
  journal and state folder takes over.
* **SIGKILL soak** (:func:`test_sigkill_soak`, e2e): ``asab tenant --until-idle`` in a child
  process against the fake broker on loopback, SIGKILLed ``ASAB_KILLS`` times (default 20) at
  points chosen by a seeded RNG (seed printed; set ``ASAB_KILL_SEED`` to replay): right after a
  journal event (``running`` + a random delay inside the job, ``measured``), inside the broker
  right after it stored a result / reserved / took a request back (before the answer leaves),
  or at a random time. Then one last run to idle; every request must have exactly one result.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from asab.actions.vial_state import VialRegistry
from asab.broker import BrokerSettings, FinalesClient
from asab.broker.journal import Journal, JournalState
from asab.broker.tenant import Tenant, TenantSettings
from asab.broker.tenant_state import held_requests, interruptions, job_failures
from tests._tenant_support import (
    ASAB,
    MAKEABLE,
    add_density,
    add_flow,
    add_random,
    broker_env,
    go,
    journal_events,
    start_asab,
)
from tests.fake_finales import TENANT_UUID, make_fake_finales, serve_fake

S = JournalState


class Killed(BaseException):
    """Stands for SIGKILL in the in-process tests: nothing after it runs."""


# ---------------------------------------------------------------------- in-process crash points
@pytest.fixture
def fake():
    return make_fake_finales(token_lifetime=3600.0)


@pytest.fixture
def client(fake):
    settings = BrokerSettings(url="http://finales.test", username="asab",
                              password="asab-password", tenant_uuid=TENANT_UUID)
    with FinalesClient(settings, transport=fake.transport(), sleep=lambda s: None) as c:
        yield c


@pytest.fixture
def journal(tmp_path):
    with Journal(tmp_path / "state" / "journal.sqlite") as j:
        yield j


def tenant(bench, client, journal, tmp_path, run_id: str, **settings) -> Tenant:
    return Tenant(bench, client, journal, tmp_path / "state",
                  TenantSettings(poll_interval=0.01, **settings), run_id=run_id)


def restart(bench, client, journal, tmp_path, **settings) -> Tenant:
    """A new tenant process on the same state folder (its run id differs)."""
    return tenant(bench, client, journal, tmp_path, f"run-{time.monotonic_ns()}", **settings)


def pending_messages(fake, uid: str) -> list[str]:
    return [m for (r, s, m) in fake.status_log if r == uid and s == "pending"]


def assert_served_once(fake, journal, uid: str) -> None:
    results = fake.results_for(uid)
    assert len(results) == 1, f"{uid}: {len(results)} results"
    history = journal.history(uid)
    measured = [e for e in history if e.state == S.MEASURED]
    posted = [e for e in history if e.state == S.POSTED]
    assert len(measured) == 1 and len(posted) == 1
    assert posted[0].payload["result_uuid"] == results[0]["uuid"]
    ref = results[0]["result"]["data"]["run_info"]["internal_reference"]
    assert ref == measured[0].payload["reference"]


def kill_on(obj, name: str, *, before: bool, when=lambda *a, **k: True):
    """Make ``obj.name`` raise :class:`Killed` (before or after the real call) once."""
    original = getattr(obj, name)
    fired = []

    def wrapper(*args, **kwargs):
        if fired or not when(*args, **kwargs):
            return original(*args, **kwargs)
        fired.append(True)
        if before:
            raise Killed(name)
        original(*args, **kwargs)
        raise Killed(name)

    setattr(obj, name, wrapper)
    return fired


def reserving(uid, status, *rest):
    return status == "reserved"


@pytest.mark.parametrize("before", [True, False], ids=["before-broker", "after-broker"])
def test_kill_around_reservation(before, sim_bench, client, journal, fake, tmp_path):
    uid = add_density(fake, MAKEABLE[0])
    first = tenant(sim_bench, client, journal, tmp_path, "run-1")
    kill_on(client, "update_request_status", before=before, when=reserving)
    with pytest.raises(Killed):
        first.cycle()
    del client.update_request_status
    assert journal.state(uid) == S.RESERVED  # journalled before the broker was told
    assert fake.requests[uid]["status"] == ("pending" if before else "reserved")
    second = restart(sim_bench, client, journal, tmp_path)
    second.resume()
    assert fake.requests[uid]["status"] == "pending"
    assert "restarted before starting" in pending_messages(fake, uid)[-1]
    assert held_requests(journal) == {}
    second.serve(until_idle=True, max_cycles=4)
    assert_served_once(fake, journal, uid)


def test_kill_mid_job_is_an_interruption_not_a_failure(sim_bench, client, journal, fake,
                                                       tmp_path):
    uid = add_density(fake, MAKEABLE[1])
    first = tenant(sim_bench, client, journal, tmp_path, "run-1")

    def die(r, step):
        if step == "running":
            raise Killed("mid-job")

    first.progress = die
    with pytest.raises(Killed):
        first.cycle()
    assert journal.state(uid) == S.RUNNING and fake.requests[uid]["status"] == "reserved"
    second = restart(sim_bench, client, journal, tmp_path)
    report = second.resume()
    assert report.failed == [uid] and fake.requests[uid]["status"] == "pending"
    message = pending_messages(fake, uid)[-1]
    assert "restarted during the job" in message and "drained" in message
    assert (job_failures(journal, uid), interruptions(journal, uid)) == (0, 1)
    second.serve(until_idle=True, max_cycles=4)
    assert_served_once(fake, journal, uid)
    assert fake.results_for(uid)[0]["result"]["data"]["run_info"]["internal_reference"] \
        .endswith(f"/{uid}/2")  # the second attempt


@pytest.mark.parametrize("before", [True, False], ids=["before-post", "after-broker-stored"])
def test_kill_around_the_post(before, sim_bench, client, journal, fake, tmp_path):
    uid = add_density(fake, MAKEABLE[2])
    first = tenant(sim_bench, client, journal, tmp_path, "run-1")
    kill_on(client, "post_result", before=before)
    with pytest.raises(Killed):
        first.cycle()
    del client.post_result
    assert journal.state(uid) == S.MEASURED
    assert len(fake.results_for(uid)) == (0 if before else 1)
    second = restart(sim_bench, client, journal, tmp_path)
    report = second.resume()
    assert report.posted == [uid]
    posted = next(e for e in journal.history(uid) if e.state == S.POSTED)
    assert posted.payload.get("found_on_broker", False) is (not before)
    second.serve(until_idle=True, max_cycles=4)
    assert_served_once(fake, journal, uid)
    assert "running" not in [str(e.state) for e in journal.history(uid)][-2:]


def test_kill_after_a_failed_job_before_give_back(sim_bench, client, journal, fake, tmp_path):
    uid = add_density(fake, MAKEABLE[0])
    sim_bench.simulation.inject("densiVisco", "invalid_method")  # every job fails, in service
    first = tenant(sim_bench, client, journal, tmp_path, "run-1")
    kill_on(client, "update_request_status", before=True,
            when=lambda r, status, *a: status == "pending")
    with pytest.raises(Killed):
        first.cycle()
    del client.update_request_status
    assert journal.state(uid) == S.FAILED and fake.requests[uid]["status"] == "reserved"
    second = restart(sim_bench, client, journal, tmp_path, max_failures=1)
    second.resume()
    assert fake.requests[uid]["status"] == "pending"
    assert pending_messages(fake, uid)[-1].startswith("asab job failed")
    second.cycle()  # one real failure, limit 1: skipped, never reserved again
    assert journal.state(uid) == S.SKIPPED and fake.results == []


def test_give_back_refused_by_a_down_broker_is_retried_next_cycle(sim_bench, client, journal,
                                                                   fake, tmp_path):
    uid = add_density(fake, MAKEABLE[0])
    first = tenant(sim_bench, client, journal, tmp_path, "run-1")
    first.progress = lambda r, step: fake.go_down() if step == "running" else None
    sim_bench.simulation.inject("densiVisco", "invalid_method")  # every job fails, in service
    report = first.cycle()
    assert report.failed == [uid] and report.broker_errors
    assert uid in held_requests(journal)
    assert pending_messages(fake, uid) == [] and fake.requests[uid]["status"] == "reserved"
    fake.come_up()
    first.progress = None
    first.cycle()  # gives it back first, then takes it again (and fails again)
    assert pending_messages(fake, uid)[0].startswith("asab job failed")
    assert uid not in held_requests(journal) and fake.requests[uid]["status"] == "pending"


@pytest.mark.parametrize("step", ["mix", "deliver"])
def test_flow_job_killed_releases_or_flags_its_vial(step, sim_bench, client, journal, fake,
                                                   tmp_path, monkeypatch):
    from asab.actions import executor
    from asab.plan import Purpose

    uid = add_flow(fake, MAKEABLE[0], 1.0)
    first = tenant(sim_bench, client, journal, tmp_path, "run-1")
    original = executor.run_dispense
    fatal = Purpose.FIRST_PORTION if step == "mix" else Purpose.VIAL

    def die(bench, planned):  # the process dies as the step's first push starts
        if planned.purpose is fatal:
            raise Killed(step)
        return original(bench, planned)

    monkeypatch.setattr(executor, "run_dispense", die)
    with pytest.raises(Killed):
        first.cycle()
    monkeypatch.setattr(executor, "run_dispense", original)
    vials = VialRegistry(tmp_path / "state" / "vials.json").occupied()
    (vial, occupant), = vials.items()
    assert occupant.status == "filling" and occupant.delivering is (step == "deliver")
    second = restart(sim_bench, client, journal, tmp_path)
    second.resume()
    message = pending_messages(fake, uid)[-1]
    after = VialRegistry(tmp_path / "state" / "vials.json").occupied()
    if step == "mix":  # nothing reached the vial: free again
        assert vial not in after and f"vial {vial} released" in message
    else:  # part of an electrolyte may be in it: kept for the operator
        assert after[vial].status == "failed" and "emptied by an operator" in message
    second.serve(until_idle=True, max_cycles=4)
    assert_served_once(fake, journal, uid)
    final = VialRegistry(tmp_path / "state" / "vials.json").occupied()
    assert [o.status for o in final.values() if o.request_id == uid].count("filled") == 1
    assert all(o.status != "filling" for o in final.values())


def test_a_request_that_keeps_killing_the_tenant_is_dropped(sim_bench, client, journal, fake,
                                                            tmp_path):
    uid = add_density(fake, MAKEABLE[0])

    def die(r, step):
        if step == "running":
            raise Killed("poison")

    for _ in range(2):
        worker = restart(sim_bench, client, journal, tmp_path, max_interruptions=2)
        worker.resume()
        worker.progress = die
        with pytest.raises(Killed):
            worker.cycle()
    worker = restart(sim_bench, client, journal, tmp_path, max_interruptions=2)
    worker.resume()
    report = worker.cycle()
    assert uid in report.skipped and journal.state(uid) == S.SKIPPED
    assert "stopped 2 times" in journal.history(uid)[-1].payload["why"]
    assert fake.requests[uid]["status"] == "pending" and fake.results == []


# ---------------------------------------------------------------------- SIGKILL soak (e2e)
KILLS = int(os.environ.get("ASAB_KILLS", "20"))
JOB_TIME = {"density": 1.2, "electrolyte": 0.4}
"""s of wall time one job takes in the child before any was timed (virtual bench clock;
measured on 2 busy cores); then :func:`_job_times` from the journal."""
MODES = ("running", "stored", "time", "measured", "reserve", "running", "give_back", "time")
"""Kill points, used in turn (delays random): after a journal event (``running``: at once the
first time in each turn, after a random part of the job the second time; ``measured``: at
once), inside the broker after it stored a result / reserved / set a request back to pending,
or at a random time after the start."""


class BrokerKill:
    """Wraps the fake's ASGI app: SIGKILLs the armed child right after the broker handled a
    matching call, before the answer is sent (the broker's change is stored, the child never
    learns of it)."""

    def __init__(self, fake):
        self.inner, self.pid, self.kind = fake.api, None, None
        self.fired = threading.Event()
        self.polled: float | None = None  # monotonic time of the first pending-list poll
        fake.api = self

    def arm(self, kind: str, pid: int) -> None:
        self.fired.clear()
        self.kind, self.pid = kind, pid

    def disarm(self) -> None:
        self.kind = None

    def _matches(self, scope) -> bool:
        path, query = scope.get("path", ""), parse_qs(scope.get("query_string", b"").decode())
        status = (query.get("new_status") or [""])[0]
        return scope.get("method") == "POST" and (
            (self.kind == "stored" and path == "/results/")
            or (self.kind == "reserve" and path.endswith("/update_status/") and status == "reserved")
            or (self.kind == "give_back" and path.endswith("/update_status/") and status == "pending"))

    async def __call__(self, scope, receive, send):
        if self.polled is None and scope.get("path") == "/pending_requests/":
            self.polled = time.monotonic()
        if scope["type"] != "http" or self.kind is None or not self._matches(scope):
            return await self.inner(scope, receive, send)

        async def send_after_kill(message):
            if message["type"] == "http.response.start" and self.kind is not None:
                os.kill(self.pid, signal.SIGKILL)
                self.kind = None
                self.fired.set()
            await send(message)

        await self.inner(scope, receive, send_after_kill)


def _wait_for_event(proc, state_dir: Path, state: str, after: int,
                    timeout: float) -> str | None:
    """Poll the journal until an event ``state`` with id > ``after`` appears; its request uuid,
    or None if the child exited or ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for i, uid, s, _p in journal_events(state_dir):
            if i > after and s == state:
                return uid
        time.sleep(0.005)
    return None


def _job_times(state_dir: Path, fake) -> dict[str, float]:
    """Median wall s from ``running`` to the next event of the same request, per quantity."""
    db = sqlite3.connect(f"file:{state_dir / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT request_uuid, state, time FROM events ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        rows = []
    finally:
        db.close()
    started: dict[str, float] = {}
    took: dict[str, list[float]] = {}
    for uid, state, t in rows:
        if state == "running":
            started[uid] = t
        elif uid in started and state in ("measured", "failed"):
            quantity = fake.requests[uid]["request"]["quantity"]
            took.setdefault(quantity, []).append(t - started.pop(uid))
    return {q: sorted(v)[len(v) // 2] for q, v in took.items()} | {
        q: t for q, t in JOB_TIME.items() if q not in took}


def _one_round(mode: str, rng: random.Random, proc, state_dir: Path, hook: BrokerKill,
               last_id: int, start_up: float, job_times: dict[str, float], fake,
               immediate: bool) -> bool:
    """Kill ``proc`` at the point ``mode``; True if it was killed (not finished on its own)."""
    if mode in ("stored", "reserve", "give_back"):
        hook.arm(mode, proc.pid)
        deadline = time.monotonic() + 30.0
        while not hook.fired.wait(0.01) and proc.poll() is None and time.monotonic() < deadline:
            pass
        hook.disarm()
        return hook.fired.is_set() or _kill(proc)
    if mode == "time":  # anywhere from start-up to a couple of jobs in
        time.sleep(rng.uniform(0.0, start_up + 2 * job_times["density"]))
        return _kill(proc)
    uid = _wait_for_event(proc, state_dir, mode, last_id, 30.0)
    if uid is not None and mode == "running" and not immediate:  # somewhere in the job
        quantity = fake.requests[uid]["request"]["quantity"]
        time.sleep(rng.uniform(0.0, 0.9 * job_times[quantity]))
    return _kill(proc)  # else at its very start


def _kill(proc) -> bool:
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    return True


def _operator(state_dir: Path, bench_state: Path, n_vials: int = 8) -> None:
    """Between two runs, as an operator would: empty the vials that are done with (not
    'filling') when fewer than 3 are free, and keep the bench ledger supplied (the ledger
    persists across the restarts: reservoirs and the solvent refilled below half, wastes and
    the balance vessel emptied above half), so that no request waits for a consumable."""
    from asab.config.loader import load_bench
    from asab.ledger import operator
    from asab.ledger.model import VesselKind, mass_of
    from asab.ledger.store import LedgerStore

    registry = VialRegistry(state_dir / "vials.json")
    occupied = registry.occupied()
    released = []
    if n_vials - len(occupied) < 3:
        for vial, occupant in occupied.items():
            if occupant.status != "filling":
                registry.release(vial)
                released.append(vial)
    config = load_bench(Path(__file__).resolve().parents[1] / "hardware_configs" / "hiu_2023")
    store = LedgerStore(bench_state, config)
    if not store.exists:
        return
    for node, vessel in store.current().vessels.items():
        capacity = vessel.capacity or 0.0
        if vessel.kind in (VesselKind.STOCK, VesselKind.SOLVENT) and vessel.volume < capacity / 2:
            operator.refill(store, node, capacity, "soak operator")
        elif vessel.kind is VesselKind.VIAL and node in released:
            operator.empty(store, node, "soak operator")
        elif vessel.kind is VesselKind.WASTE and (
                vessel.volume > capacity / 2 or (config.balance and node == config.balance.vessel
                                                 and mass_of(config, vessel.content) > 110.0)):
            operator.empty(store, node, "soak operator")


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_sigkill_soak(tmp_path, capsys):
    seed = int(os.environ.get("ASAB_KILL_SEED", random.SystemRandom().randrange(2 ** 31)))
    rng = random.Random(seed)
    with capsys.disabled():
        print(f"\n[tenant kill soak] ASAB_KILL_SEED={seed} ASAB_KILLS={KILLS}")
    fake = make_fake_finales(seed=seed)
    hook = BrokerKill(fake)
    state_dir, log, bench_state = tmp_path / "state", tmp_path / "tenant.log", tmp_path / "bench"
    args = ["tenant", "--out", str(state_dir), "--state", str(bench_state), "--until-idle",
            "--poll", "0.05", "--max-interruptions", "100",
            *os.environ.get("ASAB_SOAK_ARGS", "").split()]  # e.g. "--pipelined"
    landed: Counter[str] = Counter()
    start_ups: list[float] = []
    t_total = time.monotonic()
    spare = proc = None  # spare: the next child, importing while the current one works
    with serve_fake(fake) as live, contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: [p.kill() for p in (proc, spare)
                                  if p is not None and p.poll() is None])
        env = broker_env(live.url)
        for _ in range(4):
            add_random(fake, rng)
        kills = rounds = 0
        while kills < KILLS and rounds < 3 * KILLS:
            unserved = [u for u in fake.requests if not fake.results_for(u)]
            while len(unserved) < 3:
                unserved.append(add_random(fake, rng))
            _operator(state_dir, bench_state)
            mode = MODES[rounds % len(MODES)]
            rounds += 1
            last_id = max((i for i, *_ in journal_events(state_dir)), default=0)
            start_up = sorted(start_ups)[len(start_ups) // 2] if start_ups else 3.0
            proc = spare or start_asab(args, env, log, warm=True)
            hook.polled, t0 = None, time.monotonic()
            go(proc)
            spare = start_asab(args, env, log, warm=True)
            job_times = _job_times(state_dir, fake) if last_id else dict(JOB_TIME)
            killed = _one_round(mode, rng, proc, state_dir, hook, last_id, start_up,
                                job_times, fake, immediate=rounds % len(MODES) == 1)
            proc.wait(30)
            if hook.polled is not None:
                start_ups.append(hook.polled - t0)
            if killed:
                kills += 1
                new = [s for i, _u, s, _p in journal_events(state_dir) if i > last_id]
                landed[f"{mode}:{new[-1] if new else 'start-up'}"] += 1
            else:
                assert proc.returncode == 0, log.read_text()[-3000:]
        spare.kill()
        spare.wait(30)
        final = subprocess.run([*ASAB, *args], env=env, capture_output=True, text=True,
                               timeout=300, check=False)
    elapsed = time.monotonic() - t_total
    with capsys.disabled():
        print(f"[tenant kill soak] {kills} kills in {rounds} rounds, {len(fake.requests)} "
              f"requests, {elapsed:.1f} s; child start-up (imports done) to first poll: median "
              f"{sorted(start_ups)[len(start_ups) // 2]:.2f} s, max {max(start_ups):.2f} s\n"
              f"[tenant kill soak] job wall times {_job_times(state_dir, fake)}; "
              f"kill points (mode:last journal event): "
              f"{dict(sorted(landed.items()))}")
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-3000:]
    assert kills >= KILLS
    mid_job = sum(n for k, n in landed.items() if k.endswith(":running"))
    assert mid_job >= 2, f"too few kills landed mid-job: {landed}"
    _check_outcome(fake, state_dir)


def _check_outcome(fake, state_dir: Path) -> None:
    """Every request: one result, journalled measured and posted with the same reference and
    data; interrupted ones given back with the message; no vial left 'filling'."""
    db = sqlite3.connect(state_dir / "journal.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with Journal(state_dir / "journal.sqlite") as journal:
        for uid, request in fake.requests.items():
            assert request["status"] == "resolved", "\n".join(
                [f"request {uid} is {request['status']}; its journal:"]
                + [f"  {e.id} {e.state} {e.payload}"[:400] for e in journal.history(uid)]
                + [f"  broker: {st} {m}"[:300] for r, st, m in fake.status_log if r == uid])
            assert_served_once(fake, journal, uid)
            result = fake.results_for(uid)[0]["result"]
            measured = next(e for e in journal.history(uid) if e.state == S.MEASURED)
            assert measured.payload["result"]["data"] == result["data"]
            stops = [e for e in journal.history(uid) if e.payload.get("interrupted")]
            told = [m for m in pending_messages(fake, uid) if "restarted during the job" in m]
            assert len(told) >= len(stops), (uid, stops, told)
        assert held_requests(journal) == {}
        for uid in {u for (u, s, _m) in fake.status_log if s == "pending"}:
            assert all(m for m in pending_messages(fake, uid))  # every give-back says why
    vials = VialRegistry(state_dir / "vials.json").occupied()
    assert all(o.status != "filling" for o in vials.values()), vials
    assert all(o.delivering for o in vials.values() if o.status == "failed"), vials
    served = Counter(json.loads(p)["reference"].split("/")[1]
                     for _i, _u, s, p in journal_events(state_dir) if s == "measured")
    assert all(n == 1 for n in served.values()), served
