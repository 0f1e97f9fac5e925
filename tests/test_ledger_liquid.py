"""Independent tests of the library's liquid model and bench ledger (issue 11): plug flow in
asab.ledger.liquid, the step effects of asab.plan.effects, the clone() convention and the
ledger store. Written by a reviewer, not by the author of the code.

Properties (hypothesis): volume and per-origin conservation through ``through``,
``take_front``, ``normalise``, ``merge_streams``, syringes and vessels; a random sequence of
fills, empties, pushes and partial (failed) dispenses on the 2023 bench conserves every liquid
origin over vessels + syringes + lines; changing a clone never changes the original; the store
round-trips a ledger and refuses a damaged one.

The bugs the review found are fixed; each has its test here.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asab.errors import Cause, ConfigError, DeviceError
from asab.ledger import operator
from asab.ledger.liquid import (
    GAS,
    MERGE_VOLUME,
    SOLVENT,
    Parcel,
    draw_from_vessel,
    merge_streams,
    normalise,
    take_from_syringe,
    take_front,
    through,
    total,
)
from asab.ledger.model import BenchLedger, initial_ledger
from asab.ledger.residue import layer_content
from asab.ledger.store import LedgerStore
from asab.plan.builder import PlanBuilder
from asab.plan.effects import Edges, apply_dispense, apply_step
from asab.plan.steps import Dispense, Move, Phase, PlannedRoute, Purpose
from asab.tubing import TubingGraph

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=12, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

ORIGINS = [GAS, SOLVENT, "stock-a", "stock-b", "unknown"]
TOL = 1e-9


# ---------------------------------------------------------------------- strategies
@st.composite
def parcels(draw, max_size: int = 6, max_volume: float = 2.0) -> list[Parcel]:
    out = []
    for _ in range(draw(st.integers(0, max_size))):
        volume = draw(st.floats(1e-6, max_volume))
        origins = draw(st.lists(st.sampled_from(ORIGINS), min_size=1, max_size=3, unique=True))
        weights = [draw(st.floats(0.01, 1.0)) for _ in origins]
        s = sum(weights)
        p = Parcel.of({o: volume * w / s for o, w in zip(origins, weights)})
        if p is not None:
            out.append(p)
    return out


contents = st.dictionaries(st.sampled_from(ORIGINS), st.floats(1e-6, 5.0), max_size=4)


def volume(ps) -> float:
    return math.fsum(p.volume for p in ps)


def assert_same_content(a: dict, b: dict, tol: float = TOL) -> None:
    for k in set(a) | set(b):
        assert a.get(k, 0.0) == pytest.approx(b.get(k, 0.0), abs=tol), k


# ---------------------------------------------------------------------- liquid.py
@SETTINGS
@given(parcels(), st.floats(0.0, 4.0), parcels())
def test_through_conserves_volume_and_every_origin(segment, capacity, incoming):
    if capacity <= 1e-12:
        segment = []  # a segment without volume holds nothing
    kept, out = through(segment, capacity, incoming)
    assert_same_content(total(segment + incoming), total(kept + out))
    everything = volume(segment) + volume(incoming)
    if capacity > 1e-12:
        assert volume(kept) == pytest.approx(min(capacity, everything), abs=TOL)
    else:
        assert kept == []
    assert all(p.volume > 0 for p in kept + out)


@SETTINGS
@given(parcels(), st.floats(1e-3, 4.0), parcels())
def test_through_is_first_in_first_out(segment, capacity, incoming):
    """What leaves is the far end of (segment, then incoming), in flow order; what stays
    is the newest ``capacity`` mL."""
    kept, out = through(segment, capacity, incoming)
    queue = list(reversed(incoming)) + list(segment)  # entry end first
    expect_kept, rest = take_front(queue, min(capacity, volume(queue)))
    assert_same_content(total(kept), total(expect_kept))
    assert_same_content(total(out), total(rest))
    # the far end leaves first (up to the parcels below MERGE_VOLUME that normalise smears)
    smear = math.fsum(p.volume for p in queue if p.volume < MERGE_VOLUME) + MERGE_VOLUME
    probe = 0.01
    if segment and volume(out) > probe:
        first_out, _ = take_front(out, probe)
        far_end, _ = take_front(list(reversed(queue)), probe)
        assert_same_content(total(first_out), total(far_end), tol=smear)


@SETTINGS
@given(parcels(), st.floats(0.0, 10.0))
def test_take_front_splits_without_loss(ps, v):
    taken, rest = take_front(ps, v)
    assert volume(taken) == pytest.approx(min(v, volume(ps)), abs=1e-9)
    assert_same_content(total(taken + rest), total(ps))
    assert ps == ps[:]  # input untouched (pure)


@SETTINGS
@given(parcels(max_size=10, max_volume=0.001))
def test_normalise_conserves_and_merges(ps):
    before = list(ps)
    out = normalise(ps)
    assert ps == before
    assert_same_content(total(out), total(ps))
    if len(out) > 1:
        assert all(p.volume >= MERGE_VOLUME for p in out)
        assert all(a.shares != b.shares for a, b in itertools.pairwise(out))


@SETTINGS
@given(st.lists(parcels(max_size=4), min_size=1, max_size=4), st.integers(1, 20))
def test_merge_streams_conserves_every_origin(streams, slices):
    merged = merge_streams(streams, slices)
    assert_same_content(total(merged), total([p for s in streams for p in s]), tol=1e-8)


@SETTINGS
@given(contents, st.floats(0.0, 12.0))
def test_syringe_dispenses_gas_first_and_loses_nothing(content, v):
    out, left = take_from_syringe(content, v)
    assert_same_content(add_all(out, left), content)
    have = math.fsum(content.values())
    assert math.fsum(out.values()) == pytest.approx(min(v, have), abs=1e-9)
    assert out.get(GAS, 0.0) == pytest.approx(min(content.get(GAS, 0.0), v), abs=1e-12)


@SETTINGS
@given(contents, st.floats(0.0, 12.0), st.booleans())
def test_vessel_draw_gives_liquid_then_air_and_loses_no_liquid(content, v, gas_supply):
    content = {k: x for k, x in content.items() if k != GAS}
    drawn, left = draw_from_vessel(content, v, gas_supply=gas_supply)
    assert math.fsum(drawn.values()) == pytest.approx(v, abs=1e-9)
    liquid_drawn = {k: x for k, x in drawn.items() if k != GAS}
    assert_same_content(add_all(liquid_drawn, left), content)


def add_all(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


# ---------------------------------------------------------------------- effects on the bench
@pytest.fixture(scope="module")
def bench(bench_config):
    return bench_config, TubingGraph.from_config(bench_config), initial_ledger(bench_config)


STOCK_PUMPS = ["A0.0", "B0.0", "C0.0", "D0.0"]
SINKS = ["waste_1", "waste_2", "vial_1"]

actions = st.lists(st.one_of(
    st.tuples(st.just("fill"), st.sampled_from(STOCK_PUMPS + ["F0.0"]), st.integers(0, 2),
              st.floats(0.05, 1.0)),
    st.tuples(st.just("empty"), st.sampled_from(STOCK_PUMPS + ["F0.0"]),
              st.sampled_from(["waste_1", "waste_2"])),
    st.tuples(st.just("push"), st.lists(st.sampled_from(STOCK_PUMPS), min_size=1, max_size=3,
                                        unique=True),
              st.floats(0.05, 3.0), st.sampled_from(SINKS)),
    st.tuples(st.just("partial"), st.sampled_from(STOCK_PUMPS + ["F0.0"]),
              st.sampled_from(["waste_1", "waste_2"]), st.floats(0.0, 1.0)),
), min_size=1, max_size=8)


def source_of(config, pump: str, choice: int) -> str:
    if pump == config.settings.solvent_pump:
        return [config.settings.solvent_node, config.settings.gas_nodes[0]][choice % 2]
    return next(s.reservoir for s in config.stocks if s.pump == pump)


def play(config, graph, b: PlanBuilder, seq) -> None:
    """Apply ``seq`` to ``b`` (its working ledger follows every step)."""
    s = config.settings
    for act in seq:
        kind = act[0]
        if kind == "fill":
            _, pump, choice, frac = act
            room = b.volume_max(pump) - b.level(pump)
            b.fill(pump, source_of(config, pump, choice), frac * room)
        elif kind == "empty":
            _, pump, target = act
            b.empty(pump, target)
        elif kind == "push":
            _, pumps, vol, sink = act
            flows = {p: 0.01 + 0.01 * i for i, p in enumerate(pumps)}
            routes = {p: graph.route(p, sink, via=[s.mixer_outlet]) for p in pumps}
            sources = {p: source_of(config, p, 0) for p in pumps}
            try:
                b.push(flows, vol, routes, sources, Purpose.FLUSH, sink)
            except DeviceError as exc:  # see test_a_push_never_refuses_a_refillable_syringe
                if exc.cause is not Cause.CANNOT_REFILL:
                    raise
        elif kind == "partial":  # a dispense cut short: the executor's accounting
            _, pump, target, frac = act
            level = b.level(pump)
            if level <= 1e-6:
                continue
            route = PlannedRoute.of(graph.route(pump, target))
            step = Dispense(phase=Phase.DRAIN, purpose=Purpose.EMPTY, sink=target,
                            valve_settings=dict(route.valve_settings),
                            moves=[Move(pump=pump, volume=level, flow=0.1, route=route)])
            apply_dispense(b.ledger, b.edges, step, {pump: frac * level})


def liquid_by_origin(ledger: BenchLedger) -> dict[str, float]:
    out: dict[str, float] = {}
    holders = [v.content for v in ledger.vessels.values()]
    holders += [s.content for s in ledger.syringes.values()]
    holders += [total(ledger.line(label)) for label in ledger.lines]
    holders += [layer_content(ledger.film(label)) for label in ledger.films]  # wall films
    holders += list(ledger.pockets.values())
    for content in holders:
        for k, v in content.items():
            if k != GAS:
                out[k] = out.get(k, 0.0) + v
    return out


@SLOW
@given(actions)
def test_random_moves_conserve_every_liquid_origin(bench, seq):
    config, graph, start = bench
    b = PlanBuilder(config, graph, start)
    play(config, graph, b, seq)
    before, after = liquid_by_origin(start), liquid_by_origin(b.ledger)
    for origin in set(before) | set(after):
        assert after.get(origin, 0.0) == pytest.approx(before.get(origin, 0.0), abs=1e-7), origin
    # lines stay full (core, wall film and pocket), syringes within their capacity
    for e in config.tubing.edges:
        if e.dead_volume > 0:
            assert b.ledger.held(e.label) == pytest.approx(e.dead_volume, abs=1e-9)
    for syringe in b.ledger.syringes.values():
        assert -1e-9 <= syringe.volume <= syringe.capacity + 1e-6
        assert all(v >= 0 for v in syringe.content.values())
    for vessel in b.ledger.vessels.values():
        assert all(v >= 0 for v in vessel.content.values())


@SLOW
@given(actions)
def test_replaying_the_planned_steps_gives_the_planned_ledger(bench, seq):
    """What the planner predicted (its working copy) is what the executor's replay of the
    same steps on the real ledger gives."""
    config, graph, start = bench
    b = PlanBuilder(config, graph, start)
    play(config, graph, b, [a for a in seq if a[0] != "partial"])
    replay = start.clone()
    edges = Edges.of(config)
    for step in b.steps:
        apply_step(replay, edges, step)
    assert replay.model_dump(exclude={"updated", "log"}) == \
        b.ledger.model_dump(exclude={"updated", "log"})


def test_a_syringe_s_gas_leaves_before_its_liquid_on_the_lines_too(bench):
    """A syringe holds 1 mL of gas (at its outlet) and 3 mL of solvent; 2 mL dispensed to
    waste: 1 mL of gas leaves first, then 1 mL of solvent, which is more than the route
    holds, so every segment of the route holds solvent only afterwards (as in the
    simulated world)."""
    config, graph, start = bench
    b = PlanBuilder(config, graph, start)
    pump = config.settings.solvent_pump
    b.ledger.syringes[pump].content = {GAS: 1.0, SOLVENT: 3.0}
    route = b.route(config.pump(pump).node, "waste_1")
    assert route.dead_volume < 1.0
    b.add(Dispense(phase=Phase.CLEAN, purpose=Purpose.EMPTY, sink="waste_1",
                   valve_settings=dict(route.valve_settings),
                   moves=[Move(pump=pump, volume=2.0, flow=0.1,
                               route=PlannedRoute.of(route))]))
    assert b.ledger.syringes[pump].content == pytest.approx({SOLVENT: 2.0})
    for label in route.edges:
        if b.ledger.line(label):
            assert total(b.ledger.line(label)).get(GAS, 0.0) < 1e-9, label
    assert b.ledger.vessels["waste_1"].volume == pytest.approx(1.0 - route.dead_volume)




def test_a_push_never_refuses_a_refillable_syringe(bench):
    config, graph, start = bench
    b = PlanBuilder(config, graph, start)
    play(config, graph, b, [("push", ["A0.0"], 1.0, "waste_1")])
    assert 0 < b.usable("A0.0") < 0.2  # 0.2 mL − 3.4e-7 mL above its reserve
    flows = {"A0.0": 0.01, "B0.0": 0.02, "C0.0": 0.03}
    routes = {p: graph.route(p, "waste_1", via=[config.settings.mixer_outlet]) for p in flows}
    sources = {p: source_of(config, p, 0) for p in flows}
    push = b.push(flows, 1.2, routes, sources, Purpose.FLUSH, "waste_1")
    assert sum(sum(m.volume for m in b.steps[i].moves) for i in push.steps) == \
        pytest.approx(1.2, abs=1e-5)


# ---------------------------------------------------------------------- clone()
@SLOW
@given(actions, st.integers(0, 2**31 - 1))
def test_changing_a_clone_never_changes_the_original(bench, seq, seed):
    config, graph, start = bench
    start_frozen = start.model_dump()
    b = PlanBuilder(config, graph, start)
    play(config, graph, b, seq[: len(seq) // 2])
    original = b.ledger
    frozen = original.model_dump()
    copy = original.clone()
    # a planner over the copy changes its own clone only …
    copy_frozen = copy.model_dump()
    b2 = PlanBuilder(config, graph, copy)
    play(config, graph, b2, seq)
    assert copy.model_dump() == copy_frozen
    # … and every public way of changing a ledger, applied to the copy itself
    edges = Edges.of(config)
    for step in b2.steps:
        apply_step(copy, edges, step)
    rng = random.Random(seed)
    node = rng.choice(sorted(copy.vessels))
    copy.vessels[node].content = {SOLVENT: 1.0}
    copy.vessels[node].capacity = 3.0
    copy.syringes["A0.0"].content = {GAS: 0.5}
    label = rng.choice(sorted(copy.lines))
    copy.set_line(label, [Parcel(0.01, ((SOLVENT, 1.0),))])
    copy.note(copy.log[0].change, "test", "changed on the clone")
    copy.waiting, copy.out_of_service = "waiting", "broken"
    from asab.plan.effects import forget_lines
    forget_lines(copy, edges)
    assert original.model_dump() == frozen
    assert start.model_dump() == start_frozen


def test_store_snapshot_and_failed_update_leave_the_ledger_alone(bench_config, tmp_path):
    store = LedgerStore(tmp_path / "state", bench_config)
    store.save()
    frozen = store.current().model_dump()
    snap = store.snapshot()
    snap.vessels["waste_1"].content = {SOLVENT: 10.0}
    snap.note(snap.log[0].change, "x")

    def broken(ledger):
        ledger.vessels["waste_2"].content = {SOLVENT: 99.0}
        ledger.lines.clear()
        raise RuntimeError("change fails half-way")
    with pytest.raises(RuntimeError):
        store.update(broken)
    assert store.current().model_dump() == frozen
    assert LedgerStore(tmp_path / "state", bench_config).current().model_dump() == frozen


# ---------------------------------------------------------------------- store
@SLOW
@given(actions)
def test_store_round_trip(bench, seq):
    import tempfile

    config, graph, _ = bench
    with tempfile.TemporaryDirectory() as tmp:
        store = LedgerStore(Path(tmp), config)
        b = PlanBuilder(config, graph, store.current())
        play(config, graph, b, [a for a in seq if a[0] != "partial"])
        edges = Edges.of(config)
        store.update(lambda L: [apply_step(L, edges, s) for s in b.steps])
        again = LedgerStore(Path(tmp), config).current()
        assert again.model_dump() == store.current().model_dump()
        assert again.model_dump(exclude={"updated", "log"}) == \
            b.ledger.model_dump(exclude={"updated", "log"})
        assert not list(Path(tmp).glob("*.tmp"))  # no temporary file left behind


def test_store_sees_a_change_written_by_another_process(bench_config, tmp_path):
    mine = LedgerStore(tmp_path, bench_config)
    mine.save()
    other = LedgerStore(tmp_path, bench_config)  # e.g. `asab bench empty` in another process
    other.update(lambda L: setattr(L.vessels["waste_2"], "content", {SOLVENT: 150.0}))
    assert mine.current().vessels["waste_2"].volume == pytest.approx(150.0)
    operator.empty(mine, "waste_2", "emptied")
    assert other.current().vessels["waste_2"].volume == 0.0


def test_a_store_opened_before_the_file_exists_sees_it_later(bench_config, tmp_path):
    tenant = LedgerStore(tmp_path, bench_config)  # fresh folder
    operator_store = LedgerStore(tmp_path, bench_config)
    operator.refill(operator_store, bench_config.settings.solvent_node, 100.0, "half bottle")
    assert tenant.current().vessels[bench_config.settings.solvent_node].volume == \
        pytest.approx(100.0)


def _ledger_text(config, tmp_path) -> str:
    store = LedgerStore(tmp_path, config)
    store.save()
    return (tmp_path / "ledger.json").read_text()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-a-ledger", "other-bench",
                                    "version", "extra-field", "zero-volume-parcel",
                                    "unknown-kind"])
def test_store_refuses_a_damaged_ledger(bench_config, tmp_path, damage):
    text = _ledger_text(bench_config, tmp_path)
    data = json.loads(text)
    if damage == "truncated":
        text = text[: len(text) // 2]
    elif damage == "garbage":
        text = "\x00\xff not json"
    elif damage == "not-a-ledger":
        text = json.dumps([1, 2, 3])
    else:
        if damage == "other-bench":
            data["bench"] = "someone-else"
        elif damage == "version":
            data["version"] = 99
        elif damage == "extra-field":
            data["surprise"] = 1
        elif damage == "zero-volume-parcel":
            label = next(iter(data["lines"]))
            data["lines"][label] = [{"volume": 0.0, "content": {GAS: 1.0}}]
        elif damage == "unknown-kind":
            data["vessels"]["waste_1"]["kind"] = "bucket"
        text = json.dumps(data)
    (tmp_path / "ledger.json").write_text(text, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ConfigError):
        LedgerStore(tmp_path, bench_config)


def test_store_refuses_an_oversized_ledger(bench_config, tmp_path, monkeypatch):
    import asab.ledger.store as store_mod

    _ledger_text(bench_config, tmp_path)
    monkeypatch.setattr(store_mod, "MAX_LEDGER_BYTES", 100)
    with pytest.raises(ConfigError):
        LedgerStore(tmp_path, bench_config)


def test_a_ledger_missing_a_configured_vessel_is_completed_or_refused(bench_config, tmp_path):
    data = json.loads(_ledger_text(bench_config, tmp_path))
    del data["vessels"]["Reservoir6"]
    (tmp_path / "ledger.json").write_text(json.dumps(data))
    try:
        ledger = LedgerStore(tmp_path, bench_config).current()
    except ConfigError:
        return
    assert "Reservoir6" in ledger.vessels


def _poisoned(config, tmp_path, where: str, value: str) -> None:
    data = json.loads(_ledger_text(config, tmp_path))
    if where == "vessel":
        data["vessels"]["waste_2"]["content"] = {SOLVENT: "@@"}
    elif where == "capacity":
        data["vessels"]["waste_2"]["capacity"] = "@@"
    elif where == "syringe":
        data["syringes"]["A0.0"]["content"] = {GAS: "@@"}
    elif where == "share":
        label = next(iter(data["lines"]))
        data["lines"][label][0]["content"] = {GAS: "@@"}
    (tmp_path / "ledger.json").write_text(json.dumps(data).replace('"@@"', value))


@pytest.mark.parametrize("where", ["vessel", "capacity", "syringe", "share"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-5.0"])
def test_store_refuses_non_finite_or_negative_numbers(bench_config, tmp_path, where, value):
    _poisoned(bench_config, tmp_path, where, value)
    with pytest.raises(ConfigError):
        LedgerStore(tmp_path, bench_config)


@pytest.mark.parametrize("node", ["waste_2", "Solvent"])
def test_a_nan_level_never_passes_the_consumable_check(bench_config, node):
    from asab.plan.consumables import ConsumableError
    from asab.plan.planner import BenchContext, formulate, plan_density

    ctx = BenchContext(bench_config)
    ledger = initial_ledger(bench_config)
    ledger.vessels[node].content = {SOLVENT: float("nan")}
    f = formulate(ctx, ledger, "LiPF6=0.07,EC=0.29,EMC=0.64", 1.0)
    with pytest.raises((ConfigError, ConsumableError, ValueError)):
        plan_density(ctx, ledger, f)


# ---------------------------------------------------------------------- consumables
MIX = "LiPF6=0.07,EC=0.29,EMC=0.64"


def _ctx(config):
    from asab.plan.planner import BenchContext

    return BenchContext(config)


def test_a_stock_running_short_is_avoided_when_another_mix_exists(bench_config):
    from asab.plan.planner import plan_density, stock_aware

    ctx, ledger = _ctx(bench_config), initial_ledger(bench_config)
    ledger.vessels["Reservoir5"].content = {"1.5M-LiPF6-EMC": 1.0}
    plan = stock_aware(lambda f: plan_density(ctx, ledger, f), ctx, ledger, MIX, 1.0)
    used = {s for s, v in plan.formulation.flows.items() if v > 0}
    assert "1.5M-LiPF6-EMC" not in used
    assert any("1.5M-LiPF6-EMC" in n for n in plan.notes)
    assert "Reservoir5" not in plan.consumption.change  # nothing drawn from it


def test_a_stock_shortage_names_what_is_needed_and_left(bench_config):
    from asab.plan.consumables import ConsumableError, total_drawn
    from asab.plan.planner import formulate, plan_density, stock_aware

    ctx, ledger = _ctx(bench_config), initial_ledger(bench_config)
    ledger.vessels["Reservoir6"].content = {"1.5M-LiPF6-EC-EMC": 1.0}
    with pytest.raises(ConsumableError) as err:
        stock_aware(lambda f: plan_density(ctx, ledger, f), ctx, ledger, MIX, 1.0)
    (short,) = err.value.shortages
    assert short.stock == "1.5M-LiPF6-EC-EMC" and short.node == "Reservoir6"
    full = plan_density(ctx, initial_ledger(bench_config), formulate(ctx, ledger, MIX, 1.0))
    assert short.needed == pytest.approx(total_drawn(full)["Reservoir6"])
    assert short.left == pytest.approx(1.0 - bench_config.settings.reservoir_reserve)


def test_balance_and_waste_are_both_checked_on_the_vessel_on_the_pan(bench_config):
    from asab.ledger.model import mass_of
    from asab.plan.consumables import Consumable, ConsumableError
    from asab.plan.planner import formulate, plan_density

    node = bench_config.balance.vessel
    assert node in bench_config.settings.waste_nodes  # waste_2 on the 2023 bench
    ctx, ledger = _ctx(bench_config), initial_ledger(bench_config)
    f = formulate(ctx, ledger, MIX, 1.0)
    added = plan_density(ctx, ledger, f).consumption.change[node]
    ledger.vessels[node].content = {SOLVENT: 215.0}
    with pytest.raises(ConsumableError) as err:
        plan_density(ctx, ledger, f)
    (short,) = [s for s in err.value.shortages if s.kind is Consumable.BALANCE]
    before = mass_of(bench_config, {SOLVENT: 215.0})
    assert short.left == pytest.approx(bench_config.balance.capacity - before)
    assert short.needed > 0 and short.unit == "g"
    ledger.vessels[node].capacity = 215.0 + added / 2  # now the container is short too
    with pytest.raises(ConsumableError) as err:
        plan_density(ctx, ledger, f)
    assert err.value.kinds == {Consumable.BALANCE, Consumable.WASTE}
    (waste,) = [s for s in err.value.shortages if s.kind is Consumable.WASTE]
    assert waste.needed == pytest.approx(added) and waste.left == pytest.approx(added / 2)


def test_a_vial_already_holding_liquid_counts(bench_config):
    from asab.plan.consumables import Consumable, ConsumableError
    from asab.plan.planner import formulate, plan_vial

    ctx, ledger = _ctx(bench_config), initial_ledger(bench_config)
    f = formulate(ctx, ledger, MIX, 6.0)
    plan_vial(ctx, ledger, f, "vial_1", 6.0)  # empty vial: fine
    ledger.vessels["vial_1"].content = {"EMC": 15.0}
    with pytest.raises(ConsumableError) as err:
        plan_vial(ctx, ledger, f, "vial_1", 6.0)
    (short,) = err.value.shortages
    assert short.kind is Consumable.VIAL and short.node == "vial_1"
    assert short.left == pytest.approx(bench_config.settings.vial_capacity - 15.0)
    assert short.needed == pytest.approx(6.0, rel=0.01)


def test_a_ledger_with_aged_film_portions_is_read_into_the_three_stages():
    """Ledger files from before the staged layer kept (volume, content, age): a portion is
    split 1 : x : x²/2 (x = 1.75·age) over the stages, its volume kept; invalid ages are
    refused by validation, not silently changed."""
    import math

    import pydantic

    from asab.ledger.model import BenchLedger

    def ledger(**film):
        return BenchLedger.model_validate(
            {"bench": "b", "films": {"t1": [{"volume": 1.0, "content": {"s": 1.0}, **film}]}})

    staged = ledger(age=2.0).films["t1"]
    x = 3.5
    assert [c.stage for c in staged] == [0, 1, 2]
    assert math.isclose(sum(c.volume for c in staged), 1.0)
    assert [c.volume for c in staged] == pytest.approx(
        [w / (1 + x + x * x / 2) for w in (1, x, x * x / 2)])
    assert [c.volume for c in ledger(age=0).films["t1"]] == [1.0]
    for bad in (-1.0, float("nan"), float("inf"), 1e200, None, "1"):
        with pytest.raises(pydantic.ValidationError):
            ledger(age=bad)
