"""``asab plan`` (a job plan, printed without touching the bench) and ``asab bench`` (the
bench ledger: ``status``, and the operator's corrections ``refill``, ``empty``, ``set-line``).

Both read the ledger of the bench state folder (``--state``, default ``runs/state/<bench
name>``, :func:`asab.ledger.store.default_state_dir`); ``plan`` and ``bench status`` never
write it, the corrections write it through :mod:`asab.ledger.operator` (timestamped, with
the operator's note).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from asab.cli.app import (
    ConfigOpt, JsonOpt, StateOpt, app, console, emit_json, fail, ledger_line, load,
    open_ledger, state_folder,
)

NoteOpt = Annotated[str, typer.Option(
    "--note", help="why, or what was done (kept with the ledger event)")]
RefillNode = Annotated[str, typer.Argument(help="stock reservoir or solvent bottle")]
Volume = Annotated[str, typer.Argument(
    help="mL now in it, or a quantity such as '45 mL' or '0.5 L'")]
Segment = Annotated[str, typer.Argument(help="tubing segment (edge label)")]
Liquid = Annotated[str, typer.Argument(
    help="what fills it now: a stock name, solvent, gas or unknown")]


def _wide():
    """The console, at least 140 columns wide when not a terminal (files, pipes, tests)."""
    from rich.console import Console

    if console.is_terminal:
        return console
    return Console(width=max(console.width, 140), file=console.file, highlight=False)


def _num(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


# ---------------------------------------------------------------------- asab plan
@app.command("plan")
def plan_command(
        composition: Annotated[str, typer.Argument(help='e.g. "LiPF6=0.07,EC=0.29,EMC=0.64"')],
        vial: Annotated[bool, typer.Option(
            "--vial", help="plan a delivery into the first vial the ledger shows empty "
            "(default: a density/viscosity measurement)")] = False,
        volume: Annotated[Optional[str], typer.Option(
            help="with --vial: volume to deliver, mL or a quantity such as '2.5 mL' "
            "(default 1 mL)")] = None,
        config: ConfigOpt = None, state: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Print the job plan of one request without touching the bench.

    Plans against the bench ledger of --state as asab run would (the ledger is only read):
    every step with its pumps, volumes, flows and route ends, the logical pushes, the
    predicted consumption of every vessel and the balance load, the expected bench time.
    --json prints the plan itself (a JobPlan).

    Exit 4: refused for a consumable (the reason names it, the amount needed and left, and
    the fix); 1: malformed composition, not makeable (policy reject), not deliverable.

    Example: asab plan "LiPF6=0.07,EC=0.29,EMC=0.64" --json
    """
    from asab.errors import AsabError
    from asab.formulation import parse_composition
    from asab.plan import ConsumableError
    from asab.plan.planner import BenchContext, plan_density, plan_vial, stock_aware
    from asab.units import to_canonical

    if volume is not None and not vial:
        raise typer.BadParameter("--volume is the volume of a vial delivery: give --vial too",
                                 param_hint="--volume")
    cfg = load(config)
    store = open_ledger(cfg, state_folder(cfg, state))
    ledger = store.current()
    ctx = BenchContext(cfg)
    try:
        request = parse_composition(composition, cfg)
        if vial:
            mL = to_canonical(volume, "volume") if volume is not None else 1.0
            if not 0 < mL <= cfg.settings.vial_capacity:
                fail(f"--volume {mL:g} mL: a vial delivery takes more than 0 and at most "
                     f"{cfg.settings.vial_capacity:g} mL (settings.vial_capacity)")
            node = _empty_vial(cfg, ledger)
            plan = stock_aware(lambda f: plan_vial(ctx, ledger, f, node, mL), ctx, ledger,
                               request, mL)
        else:
            plan = stock_aware(lambda f: plan_density(ctx, ledger, f), ctx, ledger, request,
                               1.0)
    except ConsumableError as exc:
        fail(f"refused, the bench waits for the operator: {exc}", code=4)
    except (AsabError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        emit_json(plan.model_dump_json(indent=2))
        return
    console.print(ledger_line(store), markup=False, highlight=False, soft_wrap=True)
    _print_plan(cfg, ledger, plan)


def _empty_vial(cfg, ledger) -> str:
    """The first configured vial the ledger shows empty; exit 4 when there is none."""
    for node in cfg.settings.vial_nodes:
        held = ledger.vessels.get(node)
        if held is not None and held.volume <= 1e-9:
            return node
    if not cfg.settings.vial_nodes:
        fail("this bench has no vials (settings.vial_nodes)")
    fail("refused, the bench waits for the operator: no empty vial in the ledger; empty one, "
         "then `asab bench empty <vial>`", code=4)


def _step_row(plan, i: int, st) -> list[str]:
    kind = st.kind
    purpose = str(st.purpose) if st.purpose is not None else ""
    pumps = volume = flow = where = ""
    if kind == "fill":
        pumps, volume, flow = st.pump, f"{st.volume:.4f}", f"{st.flow:.4g}"
        where = f"{st.source} → {st.pump}"
    elif kind == "dispense":
        pumps = ", ".join(m.pump for m in st.moves)
        volume = f"{sum(m.volume for m in st.moves):.4f}"
        flow = f"{sum(m.flow for m in st.moves):.4g}"
        where = f"{pumps} → {st.sink}"
    elif kind == "measure":
        where = f"{plan.instrument}: {st.sample}"
    elif kind in ("tare", "weigh"):
        where = "balance" + (f" ×{st.reads}" if kind == "weigh" and st.reads > 1 else "")
    return [str(i), str(st.phase), kind, purpose, pumps, volume, flow, where,
            f"{st.duration:.1f}"]


def _print_plan(cfg, ledger, plan) -> None:
    from asab.formulation import by_name

    console = _wide()
    f = plan.formulation
    achieved = by_name(f.achieved, cfg)
    what = f"delivery into {plan.vial} ({plan.volume_requested:g} mL)" if plan.vial else \
        "density/viscosity measurement"
    console.print(f"[bold]{plan.kind} plan[/]: {escape(what)} of "
                  + ", ".join(f"{k}={v:.4f}" for k, v in achieved.items())
                  + f" (distance to the request {f.distance:.1e}"
                  + (", flagged: the closest makeable" if f.flagged else "") + ")")
    steps = Table("#", "phase", "kind", "purpose", "pumps", "volume / mL", "flow / (mL/s)",
                  "from → to", "duration / s", title=f"{len(plan.steps)} steps")
    for i, st in enumerate(plan.steps):
        steps.add_row(*map(escape, _step_row(plan, i, st)))
    console.print(steps)
    pushes = Table("purpose", "volume / mL", "into", "flows / (mL/min)", "steps",
                   title="pushes")
    for p in plan.pushes:
        flows = ", ".join(f"{pump} {v * 60:.4g}" for pump, v in p.flows.items())
        pushes.add_row(str(p.purpose), f"{p.volume:.3f}", p.sink, flows,
                       ", ".join(map(str, p.steps)))
    console.print(pushes)
    use = Table("vessel", "change / mL", "now / mL", "after / mL", "capacity / mL",
                title="predicted consumption")
    for node, delta in plan.consumption.change.items():
        v = ledger.vessels.get(node)
        now = v.volume if v else 0.0
        use.add_row(node, f"{delta:+.2f}", f"{now:.2f}", f"{now + delta:.2f}",
                    _num(v.capacity if v else None))
    console.print(use)
    if plan.consumption.balance_load is not None and cfg.balance is not None:
        console.print(f"balance load afterwards: {plan.consumption.balance_load:.2f} g of "
                      f"{cfg.balance.capacity:g} g ({cfg.balance.vessel})")
    console.print(f"expected bench duration: {plan.duration:.0f} s "
                  f"({plan.duration / 60:.1f} min)")
    for note in plan.notes:
        console.print(f"note: {escape(note)}")
    for reason, label in ((ledger.out_of_service, "out of service"),
                          (ledger.waiting, "waiting for the operator")):
        if reason:
            console.print(f"[yellow]the ledger says the bench is {label}:[/] {escape(reason)}",
                          soft_wrap=True)


# ---------------------------------------------------------------------- asab bench
bench_app = typer.Typer(no_args_is_help=True, help=(
    "See and correct the bench ledger: what every reservoir, the solvent bottle, the wastes, "
    "the vessel on the balance, each vial, syringe and line holds. Each correction is written "
    "with a timestamp and the operator's note."))
app.add_typer(bench_app, name="bench")


def _open(config: Path | None, state: Path | None):
    cfg = load(config)
    return cfg, open_ledger(cfg, state_folder(cfg, state))


@bench_app.command("status")
def bench_status(config: ConfigOpt = None, state: StateOpt = None,
                 lines: Annotated[bool, typer.Option(
                     "--lines", help="list every tubing segment's content (default: a "
                     "summary by main content)")] = False,
                 events: Annotated[int, typer.Option(
                     min=0, max=2000, help="latest ledger events shown")] = 10,
                 as_json: JsonOpt = False) -> None:
    """Show the bench ledger: levels and capacities of every vessel, the balance load,
    syringe and line contents, out-of-service and waiting reasons, the latest events.

    Only reads the ledger (a state folder without one shows a fresh bench).

    Example: asab bench status --json
    """
    from asab.ledger.operator import status

    cfg, store = _open(config, state)
    data = status(cfg, store.current(), events=events)
    if as_json:
        emit_json({"ledger": str(store.path), "exists": store.exists, **data})
        return
    console.print(ledger_line(store), markup=False, highlight=False, soft_wrap=True)
    for key, label in (("out_of_service", "out of service"),
                       ("waiting", "waiting for the operator")):
        if data[key]:
            console.print(f"[bold red]{label}:[/] {escape(data[key])}", soft_wrap=True)
    _print_vessels(data)
    _print_syringes(data)
    _print_lines(data, every=lines)
    if data["events"]:
        out = _wide()
        table = Table("time (UTC)", "change", "subject", "detail", "note",
                      title=f"latest {len(data['events'])} ledger events")
        for e in data["events"]:
            table.add_row(*(escape(str(e[k])) for k in ("time", "change", "subject", "detail",
                                                           "note")))
        out.print(table)


def _print_vessels(data: dict) -> None:
    from asab.ledger.operator import describe_content

    console = _wide()
    table = Table("vessel", "kind", "holds", "level / mL", "capacity / mL", "full",
                  title=f"vessels of {data['bench']}")
    balance = data["balance"]
    for v in data["vessels"]:
        if v["kind"] == "gas":
            table.add_row(v["node"], "gas", "gas supply", "—", "—", "")
            continue
        full = f"{v['volume'] / v['capacity']:.0%}" if v["capacity"] else ""
        holds = ", ".join(v["stocks"]) if v["kind"] == "stock" else \
            describe_content(v["content"])
        if balance and v["node"] == balance["vessel"]:
            holds += f"; on the balance: {balance['load']:.2f} g of {balance['capacity']:g} g"
        table.add_row(v["node"], v["kind"], escape(holds), f"{v['volume']:.2f}",
                      _num(v["capacity"]), full)
    console.print(table)


def _print_syringes(data: dict) -> None:
    from asab.ledger.operator import describe_content

    console = _wide()
    table = Table("pump", "capacity / mL", "fill / mL", "content", title="syringes")
    for s in data["syringes"]:
        table.add_row(s["pump"], f"{s['capacity']:g}", f"{s['volume']:.3f}",
                      escape(describe_content(s["content"])))
    console.print(table)


def _print_lines(data: dict, *, every: bool) -> None:
    from asab.ledger.operator import describe_content

    console = _wide()
    if every:
        table = Table("segment", "volume / mL", "mostly", "content", title="lines")
        for line in data["lines"]:
            table.add_row(line["segment"], f"{line['volume']:.4f}", escape(line["main"]),
                          escape(describe_content(line["content"])))
        console.print(table)
        return
    groups: dict[str, list[dict]] = {}
    for line in data["lines"]:
        groups.setdefault(line["main"], []).append(line)
    table = Table("mostly", "segments", "volume / mL", "e.g.",
                  title="lines by main content (--lines lists every segment)")
    for main, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        names = ", ".join(m["segment"] for m in members[:4]) + (" …" if len(members) > 4 else "")
        table.add_row(escape(main), str(len(members)), f"{sum(m['volume'] for m in members):.3f}",
                      escape(names))
    console.print(table)


def _changed(store, subject: str, before: dict, after: dict, as_json: bool, **extra) -> None:
    """Say what a correction changed (or print it as JSON)."""
    from asab.ledger.operator import describe_content

    event = store.current().log[-1]
    if as_json:
        emit_json({"ledger": str(store.path), "subject": subject, "before": before,
                   "after": after, "event": event.model_dump(mode="json"), **extra})
        return
    console.print(f"{subject}: {describe_content(before)} → {describe_content(after)}",
                  markup=False, highlight=False, soft_wrap=True)
    console.print(f"written to {store.path} at {event.time}"
                  + (f" with the note {event.note!r}" if event.note else ""),
                  markup=False, highlight=False, soft_wrap=True)


def _checked_note(note: str) -> str:
    from asab.ledger.operator import check_note

    try:
        return check_note(note)
    except ValueError as exc:
        fail(f"--note: {exc}")


@bench_app.command("refill")
def bench_refill(node: RefillNode, volume: Volume, note: NoteOpt = "",
                 config: ConfigOpt = None, state: StateOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Tell the ledger that a stock reservoir or the solvent bottle now holds VOLUME.

    Lifts the ledger's 'waiting for the operator' mark: the next run plans with it.
    Exit 1: unknown vessel (with the closest names), not a reservoir or the solvent bottle,
    a volume that is not a number or above the vessel's capacity.

    Example: asab bench refill Reservoir6 "45 mL" --note "new bottle, lot 42"
    """
    from asab.ledger.operator import check_vessel, refill
    from asab.units import to_canonical

    _, store = _open(config, state)
    note = _checked_note(note)
    try:
        before = store.current().vessels[check_vessel(store.current(), node)].content
        mL = to_canonical(volume, "volume")
        after = refill(store, node, mL, note).vessels[node].content
    except (KeyError, ValueError) as exc:
        fail(str(exc))
    _changed(store, node, dict(before), dict(after), as_json)


@bench_app.command("empty")
def bench_empty(node: Annotated[str, typer.Argument(help="waste, vial or any vessel")],
                note: NoteOpt = "",
                vials: Annotated[Optional[Path], typer.Option(
                    "--vials", help="also release NODE (a vial) in this tenant folder's "
                    "vials.json (the --out of asab tenant), or in this vials.json file")] = None,
                config: ConfigOpt = None, state: StateOpt = None,
                as_json: JsonOpt = False) -> None:
    """Tell the ledger that a waste container, a vial or the vessel on the balance has been
    emptied.

    Lifts the ledger's 'waiting for the operator' mark. With --vials the vial is released in
    the tenant's vial occupancy too (as asab vials --release does), so the tenant fills it
    again. Exit 1: unknown vessel (with the closest names), a gas supply, --vials for a node
    that is not a vial or without a vials.json.

    Example: asab bench empty waste_1 --note "bottle emptied into the solvent drum"
    """
    from asab.actions.vial_state import VIAL_STATE_FILE, VialRegistry
    from asab.errors import ConfigError
    from asab.ledger.operator import check_vessel, empty

    cfg, store = _open(config, state)
    note = _checked_note(note)
    registry = None
    try:
        before = store.current().vessels[check_vessel(store.current(), node)].content
        if vials is not None:
            if node not in cfg.settings.vial_nodes:
                fail(f"--vials releases a vial; {node} is not one of the bench's vials")
            path = vials / VIAL_STATE_FILE if vials.is_dir() else vials
            if not path.is_file():
                fail(f"no vial occupancy at {path} (give the tenant folder, the --out of "
                     "asab tenant, or its vials.json)")
            registry = VialRegistry(path)
        after = empty(store, node, note).vessels[node].content
    except (KeyError, ValueError) as exc:
        fail(str(exc))
    except ConfigError as exc:
        fail(exc.problems[0].reason)
    released = None
    if registry is not None:
        held = registry.occupied().get(node)
        registry.release(node)
        released = {"file": str(registry.path), "was": held.model_dump(mode="json") if held
                    else None}
    _changed(store, node, dict(before), dict(after), as_json, released=released)
    if released is not None and not as_json:
        was = released["was"]
        console.print(f"{node} released in {released['file']}"
                      + (f" (was {was['status']}, request {was['request_id']})" if was
                         else " (it was not occupied there)"), markup=False, highlight=False,
                      soft_wrap=True)


@bench_app.command("set-line")
def bench_set_line(segment: Segment, liquid: Liquid, note: NoteOpt = "",
                   config: ConfigOpt = None, state: StateOpt = None,
                   as_json: JsonOpt = False) -> None:
    """Tell the ledger what fills a tubing segment over its whole volume, after manual work
    (a line flushed by hand, a tube replaced: gas).

    The planner primes and flushes from what the ledger says each line holds. Exit 1:
    unknown segment (with the closest labels) or liquid.

    Example: asab bench set-line 0282-NC-6 gas --note "tube replaced"
    """
    from asab.ledger.operator import check_segment, set_line

    cfg, store = _open(config, state)
    note = _checked_note(note)
    try:
        check_segment(cfg, segment)
        before = _line_content(store.current(), segment)
        set_line(store, segment, liquid, note)
    except (KeyError, ValueError) as exc:
        fail(str(exc))
    _changed(store, segment, before, _line_content(store.current(), segment), as_json)


def _line_content(ledger, segment: str) -> dict[str, float]:
    from asab.ledger.liquid import total

    return total(ledger.line(segment))
