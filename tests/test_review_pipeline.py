"""Review of the pipelined scheduler (CooperativeClock, Pipeline, run_jobs(pipelined=True)):
each test shows one defect found in review, now fixed (regression tests)."""

from __future__ import annotations

import copy
import json
import threading
import time

from conftest import HIU_2023

from asab.clock import RealClock
from asab.errors import Cause, DeviceError
from asab.requests import DENSITY, load_jobs, validate_request
from asab.runner import run_jobs
from asab.tasks import CooperativeClock
from simulators.clock import VirtualClock

DEMO = load_jobs(HIU_2023 / "demo_requests.json")
EMC = "JBTWLSYIZRCDFO-UHFFFAOYSA-N"  # ethyl methyl carbonate (the fault matrix's pure job)


# ---------------------------------------------------------------------- the clock
# Found in review (fixed): CooperativeClock._hand_over evaluates every waiter's ready() in
# whichever thread hands over, with nobody running: an exception there escapes with the waiter
# left queued and nobody granted, so every other task waits forever
def test_a_raising_ready_predicate_does_not_stall_the_other_tasks():
    clock = CooperativeClock(VirtualClock())
    calls = [0]

    def ready() -> bool:
        calls[0] += 1
        if calls[0] > 1:
            raise RuntimeError("the predicate broke")
        return False

    def sleeper() -> None:
        for _ in range(3):
            clock.sleep(1.0)

    waiter = clock.spawn(lambda: clock.block(ready, 100.0, "a broken condition"), "waiter")
    other = clock.spawn(sleeper, "sleeper")
    clock.join([waiter, other], timeout=3)
    assert other.done.is_set(), "the sleeper never ran: the clock is stuck"
    assert other.error is None
    assert waiter.done.is_set() and isinstance(waiter.error, RuntimeError)


# Found in review (fixed): CooperativeClock._hand_over calls base.sleep(delay) while holding
# its condition: on a real clock a thread outside the tasks (the actions server's job threads
# on hardware_bench) that wants to sleep a short time waits for another thread's whole long
# sleep first, so the wait that ends first does not go first
def test_on_a_real_clock_a_long_sleep_does_not_hold_up_a_shorter_one():
    clock = CooperativeClock(RealClock())
    took: dict[str, float] = {}

    def long() -> None:
        clock.sleep(1.5)

    def short() -> None:
        time.sleep(0.1)  # begins while the long sleep is under way
        t0 = time.monotonic()
        clock.sleep(0.05)
        took["short"] = time.monotonic() - t0

    threads = [threading.Thread(target=long, daemon=True), threading.Thread(target=short, daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert took["short"] < 0.5, f"a 0.05 s sleep took {took['short']:.2f} s"


# ---------------------------------------------------------------------- the pipeline
# Found in review (fixed): run_fill/run_dispense check the bench once, then set_valves waits
# (valve polls hand the bench over); a step that fails meanwhile stops every pump, yet the
# preempted step then starts its pumps (aspirate/dispense) before its first wait_done
# checkpoint stops them
def test_no_step_starts_a_pump_after_another_step_failed(bench_config, tmp_path, monkeypatch):
    """Job 1 is measured while job 2 primes; the densimeter reports an error (job 1's Measure
    fails) while job 2's Fill is switching its valve."""
    from asab.cli.wiring import simulated_bench
    from asab.drivers import antonpaar

    broke: list = []
    real_signature = antonpaar._signature

    def signature(path):
        if broke:
            raise DeviceError("densiVisco", Cause.SDK_ERROR, "the instrument reports an error")
        return real_signature(path)
    monkeypatch.setattr(antonpaar, "_signature", signature)

    with simulated_bench(bench_config, tmp_path / "instruments") as bench:
        def pipe():
            return getattr(bench.task_check, "__self__", None)

        def step_ref():
            p = pipe()
            return None if p is None else getattr(p._local, "step", None)

        late: list = []  # (time, command, pump, step) sent by a step after the failure
        for name, pump in bench.pumps.items():
            for command in ("aspirate", "dispense"):
                original = getattr(pump, command)

                def wrapped(*a, _o=original, _n=name, _c=command, **k):
                    p, ref = pipe(), step_ref()
                    if p is not None and ref is not None and p.failure is not None:
                        late.append((bench.clock.now(), _c, _n, ref))
                    return _o(*a, **k)
                setattr(pump, command, wrapped)
        for name, valve in bench.valves.items():
            original_switch = valve.switch

            def switch(position, _o=original_switch, _n=name):
                p, ref = pipe(), step_ref()
                if (p is not None and ref is not None and ref[0] == 1 and not broke
                        and any(other[0] == 0 for other in p.running)):
                    broke.append((bench.clock.now(), ref, _n))  # job 1's next poll fails
                return _o(position)
            valve.switch = switch

        run_jobs(bench, [DEMO[0], DEMO[1]], tmp_path / "run", pipelined=True)
        world = bench.simulation.world
        assert not [p.name for p in bench.config.pumps if world.pump_status(p.name).pumping]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "records").glob("*.json"))]
    assert broke and records[0]["status"] == "failed", "the failure was not provoked"
    assert late == [], f"pump commands sent by steps after the pipeline had failed: {late}"


def _pure_emc(uuid: str) -> dict:
    request = copy.deepcopy(DEMO[0])
    request["uuid"] = uuid
    for item in request["request"]["parameters"]["vibrating_tube_densimetry"]["formulation"]:
        item["fraction"] = 1.0 if item["chemical"]["InChIKey"] == EMC else 0.0
    return request


# Found in review (fixed): JobRun.plan_with plans a pipelined job from
# Pipeline.predicted_ledger even after the pipeline failed: the failed job's steps that never
# ran are still counted as drawn, so the next job is refused (final record, 'refill the
# reservoir') for stock that is there; run sequentially the same job succeeds
def test_a_job_is_not_refused_for_stock_a_failed_job_never_drew(bench_config, tmp_path):
    from asab.cli.wiring import simulated_bench
    from asab.plan.planner import BenchContext, plan_density, stock_aware

    with simulated_bench(bench_config, tmp_path / "instruments") as bench:
        job = validate_request(_pure_emc("probe"), bench.config, capabilities=(DENSITY,)).job
        ctx, ledger = BenchContext(bench.config), bench.ledger.current()
        plan = stock_aware(lambda f: plan_density(ctx, ledger, f), ctx, ledger,
                           job.formulation, 1.0)
        need = -plan.consumption.change["Reservoir3"]

        def enough_for_one(led) -> None:  # 1.5 jobs' worth of EMC in its bottle
            bottle = led.vessels["Reservoir3"]
            scale = 1.5 * need / bottle.volume
            bottle.content = {k: v * scale for k, v in bottle.content.items()}
        bench.ledger.update(enough_for_one)
        bench.simulation.inject("D0.0", "busy")  # job 1 fails at its first move (draws nothing)
        run_jobs(bench, [_pure_emc("a"), _pure_emc("b")], tmp_path / "run", pipelined=True)
    first, second = (json.loads(p.read_text())
                     for p in sorted((tmp_path / "run" / "records").glob("*.json")))
    assert first["status"] == "failed" and first["stock_drawn"].get("Reservoir3", 0.0) < 1e-6
    assert second["consumables"] is None, second["reason"]
