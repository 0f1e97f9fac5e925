"""Pipelined scheduling: the cooperative clock, the per-resource rule, and pipelined runs of
the simulated 2023 bench against sequential ones (same results, every valve change safe)."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
from conftest import HIU_2023
from hypothesis import given, settings
from hypothesis import strategies as st

from asab.actions.safety import sinks, sources
from asab.errors import WaitTimeout
from asab.ledger.model import initial_ledger
from asab.plan.planner import BenchContext, plan_density, stock_aware
from asab.plan.schedule import ledger_after, overlapping, predict
from asab.requests import DENSITY, load_jobs, validate_request
from asab.runner import run_jobs
from asab.tasks import CooperativeClock
from asab.tubing import joins
from simulators.clock import VirtualClock

DEMO = load_jobs(HIU_2023 / "demo_requests.json")


# ---------------------------------------------------------------------- the clock
def test_overlapping_sleeps_are_counted_once_and_in_order():
    clock = CooperativeClock(VirtualClock())
    trace: list[tuple[float, str]] = []

    def sleeper(name: str, dt: float, n: int):
        def run():
            for _ in range(n):
                clock.sleep(dt)
                trace.append((clock.now(), name))
        return run

    tasks = [clock.spawn(sleeper("a", 1.0, 3), "a"), clock.spawn(sleeper("b", 1.5, 2), "b")]
    clock.join(tasks, timeout=10)
    assert clock.now() == pytest.approx(3.0)  # not 6: the two waits overlapped
    assert trace == [(1.0, "a"), (1.5, "b"), (2.0, "a"), (3.0, "b"), (3.0, "a")]


def test_one_task_runs_at_a_time():
    clock = CooperativeClock(VirtualClock())
    inside, most = [0], [0]
    lock = threading.Lock()

    def work():
        for _ in range(20):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            with lock:
                inside[0] -= 1
            clock.sleep(0.1)

    clock.join([clock.spawn(work, f"t{i}") for i in range(5)], timeout=10)
    assert most[0] == 1


def test_block_wakes_when_another_task_makes_it_true_and_times_out_otherwise():
    clock = CooperativeClock(VirtualClock())
    flag = {"set": False}
    woke: list[float] = []

    def waiter():
        clock.block(lambda: flag["set"], 100.0, "the flag")
        woke.append(clock.now())

    def setter():
        clock.sleep(5.0)
        flag["set"] = True

    tasks = [clock.spawn(waiter, "w"), clock.spawn(setter, "s")]
    clock.join(tasks, timeout=10)
    assert woke == [5.0] and all(t.error is None for t in tasks)
    lonely = clock.spawn(lambda: clock.block(lambda: False, 10.0, "never"), "lonely")
    clock.join([lonely], timeout=10)
    assert isinstance(lonely.error, WaitTimeout) and "never" in str(lonely.error)
    assert clock.now() == pytest.approx(15.0)


# ---------------------------------------------------------------------- the rule
def _chained_plans(config, requests):
    ctx, ledger, plans = BenchContext(config), initial_ledger(config), []
    for request in requests:
        checked = validate_request(request, config, capabilities=(DENSITY,))
        if checked.job is None:
            continue
        try:
            plan = stock_aware(lambda f, at=ledger: plan_density(ctx, at, f), ctx, ledger,
                               checked.job.formulation, 1.0)
        except Exception:  # noqa: BLE001, S112 - not makeable: not queued
            continue
        plans.append(plan)
        ledger = ledger_after(plan, ledger, config)
    return plans


@settings(max_examples=10, deadline=None)
@given(order=st.permutations(range(len(DEMO))))
def test_predicted_schedule_never_overlaps_a_resource_and_keeps_queue_order(bench_config, order):
    plans = _chained_plans(bench_config, [DEMO[i] for i in order])
    pipelined = predict(plans, bench_config)
    assert list(overlapping(pipelined)) == []
    by_resource: dict[str, list] = {}
    for slot in pipelined.slots:  # slots are listed in queue order
        for r in slot.resources:
            by_resource.setdefault(r, []).append(slot)
    for slots in by_resource.values():
        for a, b in itertools.pairwise(slots):
            assert b.start >= a.end - 1e-9  # each resource sees the steps in queue order
    assert pipelined.makespan <= predict(plans, bench_config, sequential=True).makespan + 1e-9


# ---------------------------------------------------------------------- pipelined runs
def _watch_valves(bench, changes: list):
    """Wrap every valve driver's ``switch``: after each change, check the open-path rule on
    the world's positions, and that no other running step claims that valve."""
    world = bench.simulation.world

    for name, valve in bench.valves.items():
        original = valve.switch

        def switch(position, _name=name, _original=original):
            pipe = bench.task_check.__self__ if bench.task_check is not None else None
            if pipe is not None:
                me = getattr(pipe._local, "step", None)
                others = [ref for ref, held in pipe.running.items()
                          if ref != me and f"valve:{_name}" in held]
                assert not others, f"{_name} switched by {me} while {others} hold it"
            out = _original(position)
            positions = {v.name: world.valve_position(v.name) for v in bench.config.valves}
            joined = joins(bench.graph, positions, sources(bench), sinks(bench))
            changes.append((_name, position, joined))
            return out
        valve.switch = switch


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory, bench_config):
    from asab.cli.wiring import simulated_bench

    out = {}
    for mode in ("sequential", "pipelined", "pipelined again"):
        base = tmp_path_factory.mktemp(mode.replace(" ", "-"))
        with simulated_bench(bench_config, base / "instruments") as bench:
            changes: list = []
            _watch_valves(bench, changes)
            summary = run_jobs(bench, DEMO, base / "run", pipelined=mode != "sequential")
            records = [json.loads(p.read_text()) for p in sorted((base / "run" / "records").glob("*.json"))]
            out[mode] = (summary, records, changes)
    return out


def test_pipelined_run_gives_the_sequential_results(both_runs):
    seq, pipe = both_runs["sequential"], both_runs["pipelined"]
    assert [(r["status"], r["reason"]) for r in pipe[1]] == [(r["status"], r["reason"]) for r in seq[1]]
    measured = 0
    for a, b in zip(seq[1], pipe[1]):
        if a["measurement"] is None:
            assert b["measurement"] is None
            continue
        measured += 1
        for i, rep in enumerate(a["measurement"]["repetitions"]):
            assert b["measurement"]["repetitions"][i]["density"] == pytest.approx(rep["density"], abs=1e-6)
        assert b["weighing"]["mass"] == pytest.approx(a["weighing"]["mass"], rel=1e-6)
        assert b["achieved"] == a["achieved"]
    assert measured == 6


def test_pipelined_run_is_shorter_and_counts_overlap_once(both_runs):
    seq, pipe = both_runs["sequential"][0], both_runs["pipelined"][0]
    assert pipe.pipelined and not seq.pipelined
    assert pipe.makespan_minutes < 0.95 * seq.makespan_minutes
    # overlapping jobs: each job's own time is longer than its share of the makespan
    assert pipe.job_minutes > pipe.bench_minutes_per_sample
    records = both_runs["pipelined"][1]
    spans = sorted((s["start"], s["end"]) for r in records for s in r["step_times"])
    assert spans[-1][1] - spans[0][0] == pytest.approx(pipe.makespan_minutes * 60)
    jobs = [(min(s["start"] for s in r["step_times"]), max(s["end"] for s in r["step_times"]))
            for r in records if r["step_times"]]
    assert any(b[0] < a[1] for a, b in itertools.pairwise(jobs)), "no two jobs overlapped"


def test_a_pipelined_run_is_deterministic(both_runs):
    """The same requests on the same bench: every step starts and ends at the same bench time,
    and the valves change in the same order."""
    a, b = both_runs["pipelined"], both_runs["pipelined again"]
    assert [r["step_times"] for r in a[1]] == [r["step_times"] for r in b[1]]
    assert a[2] == b[2]


def test_every_valve_change_of_a_pipelined_run_keeps_sources_off_the_wastes(both_runs):
    changes = both_runs["pipelined"][2]
    assert len(changes) > 100
    assert [c for c in changes if c[2]] == []


def test_an_emergency_stop_stops_every_task_of_a_pipelined_run(bench_config, tmp_path):
    """Pressed while job 1 is measured and job 2 is being prepared: every pump stops, no
    step starts moving liquid afterwards, job 1 fails with the e-stop, and job 2 is
    either recorded as failed (it had mixed) or not run (back to the queue, then refused
    while the latch holds)."""
    from asab.cli.wiring import simulated_bench

    with simulated_bench(bench_config, tmp_path / "instruments") as bench:
        pressed: list[float] = []

        def progress(i, _n, _job, step, _t):
            if i == 1 and step == "measure" and not pressed:
                pressed.append(bench.clock.now())
                bench.emergency_stop("operator pressed the e-stop")
        summary = run_jobs(bench, [DEMO[0], DEMO[1]], tmp_path / "run", progress=progress,
                           pipelined=True)
        world = bench.simulation.world
        assert pressed and not [p.name for p in bench.config.pumps
                                if world.pump_status(p.name).pumping]
        first, second = (json.loads(p.read_text())
                         for p in sorted((tmp_path / "run" / "records").glob("*.json")))
        assert first["status"] == "failed" and first["error"]["type"] == "EmergencyStopped"
        assert second["status"] in ("failed", "rejected")
        assert ("emergency stop" in second["reason"]
                or second["reason"].startswith("stopped after its sample was mixed"))
        assert summary.failed >= 1
        # no step of the pipeline started moving liquid after the latch (the recovery's
        # steps are not in the records; its motion is refused at the interlock)
        assert all(s["start"] <= pressed[0] for r in (first, second) for s in r["step_times"]
                   if s["kind"] in ("fill", "dispense"))
