"""``asab`` — the operator's command line: the core commands and the console entry point.

Exit codes: see :mod:`asab.cli.app`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from asab.cli.app import (  # noqa: F401 - re-exported for tests and other command modules
    ConfigOpt,
    JsonOpt,
    StateOpt,
    app,
    bench_folder,
    config_path,
    console,
    emit_json,
    err_console,
    fail,
    ledger_line,
    load,
    load_checked,
    open_ledger,
    print_problems,
    problem_json,
    state_folder,
)
from asab.errors import (
    AsabError,
    ConfigError,
    NotMakeableError,
    RequestError,
    RoutingError,
)


@app.command("check-config")
def check_config(path: Annotated[Optional[Path], typer.Argument(
        help="bench folder or bench.toml (default: $ASAB_CONFIG, else the bundled bench)")] = None,
        first_wins: Annotated[bool, typer.Option(
            "--first-wins", help="accept duplicate edge labels, first row wins")] = False,
        as_json: JsonOpt = False) -> None:
    """Load a bench and prove it can work: every route a job needs exists.

    Prints a summary and any warnings (exit 0), or every problem found (exit 1): what does
    not parse or resolve, and every stock, instrument, solvent, gas or vial route the router
    cannot find (asab/tubing/operability.py lists them).

    Example: asab check-config --json
    """
    from asab.config.benches import choose_bench, is_dir, is_file
    from asab.config.loader import summarize

    choice = choose_bench(path, given_as="PATH")
    folder = choice.path
    try:
        if is_dir(folder) and not is_file(folder / "bench.toml") and is_file(folder / "edges.csv"):
            _check_layout_only(folder, first_wins, as_json)  # a bare ASAB CSV layout
            return
        loaded, report = load_checked(choice, first_wins=first_wins)
        warnings = list(loaded.warnings) + report.warnings
        if report.problems:
            raise ConfigError(report.problems)
    except ConfigError as exc:
        print_problems(exc.problems, folder, as_json=as_json)
        raise typer.Exit(1)
    summary = summarize(loaded.config)
    summary["routes_checked"] = report.routes_checked
    if as_json:
        emit_json({"ok": True, "summary": summary,
                   "warnings": [problem_json(p) for p in warnings]})
        return
    table = Table(title=f"bench {loaded.config.name}", show_header=True)
    table.add_column("part")
    table.add_column("count", justify="right")
    table.add_column("names")
    for key, value in summary.items():
        if isinstance(value, dict):
            names = ", ".join(map(str, value.get("names", [])))
            table.add_row(key, str(value.get("count", "")), names[:100] + ("…" if len(names) > 100 else ""))
        else:
            table.add_row(key, str(value), "")
    console.print(table)
    console.print(f"every job route exists ({report.routes_checked} routes checked)")
    if warnings:
        err_console.print(f"[bold yellow]{len(warnings)} warning(s):[/]")
        for w in warnings:
            err_console.print(f"  - {w}", markup=False)


def _check_layout_only(folder: Path, first_wins: bool, as_json: bool) -> None:
    """Check a folder holding only the CSV tubing layout (no bench.toml)."""
    from asab.config.loader import load_legacy_layout

    tubing, problems = load_legacy_layout(folder, first_wins=first_wins)
    if problems:
        raise ConfigError(problems)
    counts = {"nodes": len(tubing.nodes), "edges": len(tubing.edges)}
    if as_json:
        emit_json({"ok": True, "layout_only": True, "summary": counts})
    else:
        console.print(f"layout {folder} (no bench.toml): {counts['nodes']} nodes, "
                      f"{counts['edges']} connected edges")


@app.command()
def route(source: str, target: str,
          via: Annotated[Optional[list[str]], typer.Option("--via", help="pass these nodes, in order")] = None,
          avoid: Annotated[Optional[list[str]], typer.Option("--avoid", help="never pass these nodes")] = None,
          config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Print the least-dead-volume physically possible route, its valve settings and dead volume.

    Exit 1: unknown node, no route, or every path needs two positions of one valve.

    Example: asab route A0.0 densiViscoIN --via M1.0
    """
    from asab.tubing import TubingGraph

    cfg = load(config)
    try:
        r = TubingGraph.from_config(cfg).route(source, target, via=via or (), avoid=avoid or ())
    except (RoutingError, ValueError, KeyError) as exc:
        fail(str(exc))
    if as_json:
        emit_json(r.to_dict())
        return
    console.print(" → ".join(r.nodes))
    console.print("valves: " + (", ".join(f"{v}={p}" for v, p in sorted(r.valve_settings.items())) or "none"))
    console.print(f"dead volume: {r.dead_volume:.4f} mL")


@app.command()
def formulate(composition: Annotated[str, typer.Argument(help='e.g. "LiPF6=0.07,EC=0.29,EMC=0.64"')],
              volume: Annotated[float, typer.Option(help="total volume, mL")] = 2.5,
              policy: Annotated[Optional[str], typer.Option(help="reject | closest (default: config)")] = None,
              config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Say whether a composition is makeable, what would be made, and the stock volumes.

    Exit 1: malformed composition, not makeable (policy reject), not deliverable.

    Example: asab formulate "LiPF6=0.07,EC=0.29,EMC=0.64" --volume 2.5
    """
    from asab.formulation import parse_composition, plan_formulation

    cfg = load(config)
    policy = cfg.settings.not_makeable_policy if policy is None else policy
    if policy not in ("reject", "closest"):
        fail(f"--policy must be 'reject' or 'closest', not {policy!r}")
    try:
        request = parse_composition(composition, cfg)
        plan = plan_formulation(cfg, request, volume, policy="closest")
    except (RequestError, NotMakeableError, ValueError) as exc:
        fail(str(exc))
    refused = (not plan.makeable and policy == "reject") or not plan.deliverable
    if as_json:
        emit_json(plan.model_copy(update={"policy": policy}).model_dump_json(indent=2))
    else:
        _print_plan(plan, cfg, policy)
    if refused:
        raise typer.Exit(1)


def _print_plan(plan, cfg, policy: str) -> None:
    from asab.formulation import by_name

    req, ach = by_name(plan.requested, cfg), by_name(plan.achieved, cfg)
    if plan.makeable:
        verdict = "[green]makeable[/]"
    else:
        verdict = ("[red]not makeable[/]; closest makeable shown"
                   + (" (policy 'reject': a job would be refused)" if policy == "reject"
                      else " (policy 'closest': a job would make it, flagged)"))
    console.print(f"{verdict}; distance {plan.distance:.4g}")
    if not plan.deliverable:
        console.print("[red]not deliverable by the pumps:[/] " + "; ".join(plan.notes))
    table = Table("chemical", "requested", "achieved")
    for name in sorted(set(req) | set(ach)):
        table.add_row(name, f"{req.get(name, 0.0):.4f}", f"{ach.get(name, 0.0):.4f}")
    console.print(table)
    vols = Table("stock", "pump", "volume / mL", "flow / (mL/min)")
    for stock, v in plan.stock_volumes.items():
        if v > 0:
            vols.add_row(stock, plan.pumps[stock], f"{v:.4f}", f"{plan.flows[stock] * 60:.4f}")
    console.print(vols)


@app.command()
def limits(config: ConfigOpt = None,
           finales: Annotated[bool, typer.Option(
               "--finales", help="the FINALES2 limitations document of both capabilities "
               "(density, electrolyte/flow) for the broker's administrator")] = False,
           tenant_name: Annotated[Optional[str], typer.Option(
               help="tenant name in the document (default asab_<bench>)")] = None,
           contact: Annotated[str, typer.Option(help="contact person in the document")] = "",
           as_json: JsonOpt = False) -> None:
    """Print the reachable mole-fraction range of each chemical with the loaded stocks (over
    the mixes the pumps carry at the bench's total flow; linear programmes).

    With --finales: the tenant's limitations document (format of tenant_limitations_2023.json)
    with the ranges the bench really reaches, the densimeter temperature and the vial volumes.

    Example: asab limits --finales --json > limitations.json
    """
    from asab.formulation import StockModel

    cfg = load(config)
    if finales:
        _print_finales_limits(cfg, tenant_name, contact, as_json)
        return
    ranges = StockModel.from_config(cfg).reachable_ranges(cfg.settings.total_flow)
    named = {cfg.chemical(k).name: {"InChIKey": k, "min": lo, "max": hi} for k, (lo, hi) in ranges.items()}
    if as_json:
        emit_json(named)
        return
    table = Table("chemical", "InChIKey", "min", "max", title=f"reachable mole fractions ({cfg.name})")
    for name, r in named.items():
        table.add_row(name, r["InChIKey"], f"{r['min']:.4f}", f"{r['max']:.4f}")
    console.print(table)


def _print_finales_limits(cfg, tenant_name: Optional[str], contact: str, as_json: bool) -> None:
    from asab.broker.capabilities import limitations_document

    doc = limitations_document(cfg, name=tenant_name, contact_person=contact)
    if as_json:
        emit_json(doc)
        return
    for entry in doc["limitations"]:
        lim = entry["limitations"]
        table = Table("limit", "InChIKey", "min", "max",
                      title=f"{entry['quantity']}/{entry['method']} ({doc['name']})")
        for item in lim["formulation"][0]:
            r = item["fraction"][0]
            key = item["chemical"]["InChIKey"]
            table.add_row(f"{cfg.chemical(key).name} (mol/mol)", key, f"{r['min']:.4f}", f"{r['max']:.4f}")
        for what, unit in (("temperature", "K"), ("volume", "mL")):
            for r in lim.get(what, []):
                table.add_row(f"{what} ({unit})", "", f"{r['min']:g}", f"{r['max']:g}")
        console.print(table)
    console.print("the document itself: asab limits --finales --json")


def _write_gantt(run_dir: Path, path: Path, sequential: bool, quiet: bool) -> None:
    from asab.actions.job import JobRecord
    from asab.cli.gantt import write_gantt

    records = [JobRecord.model_validate_json(p.read_bytes())
               for p in sorted((run_dir / "records").glob("[0-9][0-9][0-9]_*.json"))]
    mode = "sequential" if sequential else "pipelined"
    try:
        write_gantt(records, path, title=f"{run_dir.name}: {mode}, steps per resource by job")
    except (OSError, ValueError) as exc:
        fail(f"cannot write the Gantt chart {path}: {exc}")
    if not quiet:
        console.print(f"Gantt chart: {path}", markup=False, highlight=False)


@app.command()
def run(config: ConfigOpt = None,
        jobs: Annotated[Optional[Path], typer.Option(help="JSON list of FINALES2 requests "
                                                     "(default: the bench's demo_requests.json)")] = None,
        out: Annotated[Optional[Path], typer.Option(
            "--out", help="run folder: records, raw exports, summary.json (default "
            "runs/<timestamp>); an earlier run's folder carries that run on (its final jobs "
            "are kept, the jobs that waited for a consumable run). With --broker: the tenant "
            "folder, journal included (default runs/tenant; reused: a re-run resumes)")] = None,
        state: StateOpt = None,
        speed: Annotated[float, typer.Option(help="simulated bench: 0 = virtual time (instant), "
                                             "else real time × speed")] = 0.0,
        hardware: Annotated[bool, typer.Option(
            "--hardware", help="drive the real instruments named in the configuration "
            "instead of the simulated bench")] = False,
        broker: Annotated[Optional[str], typer.Option(
            "--broker", help="serve the pending requests of this FINALES2 broker (URL) instead "
            "of a jobs file, until none is left")] = None,
        credentials: Annotated[Optional[Path], typer.Option(
            help="with --broker: broker.toml holding the credentials (default: the bench "
            "folder's; $ASAB_BROKER_* win)")] = None,
        sequential: Annotated[bool, typer.Option(
            "--sequential", help="one step at a time, job after job (the comparator); "
            "default: pipelined, the next job prepared while this one is measured")] = False,
        gantt: Annotated[Optional[Path], typer.Option(
            help="write a Gantt chart of the run (lanes: pumps, valves, cell, balance) to "
            "this .png or .svg file")] = None,
        as_json: JsonOpt = False) -> None:
    """Formulate and measure each requested electrolyte on the (simulated) bench.

    The bench ledger in --state (what every reservoir, waste, vial and line holds) is read
    at the start and kept up to date: the next run on the same state folder continues from
    it. With --broker: serve the broker's pending density and electrolyte requests (asab
    tenant --until-idle) and print each request's state and result uuid from the journal.

    Exit 4: the bench waits for the operator (a consumable ran out); fix it, tell the ledger
    (asab bench refill/empty) and run the same command again. Exit 3: at least one job failed
    on the bench (wins over 4); 1: bad job file or run folder, or the broker cannot be reached.

    Example: asab run --out runs/demo
    """
    if not math.isfinite(speed) or speed < 0:
        fail(f"--speed must be 0 (virtual time) or a positive number, not {speed}")
    if gantt is not None and gantt.suffix.lower() not in (".png", ".svg"):
        fail(f"--gantt {gantt}: the file must end in .png or .svg")
    if broker is not None:
        from asab.cli.cmd_tenant import DEFAULT_TENANT, run_broker

        if jobs is not None:
            fail("--jobs and --broker exclude each other")
        run_broker(config, broker, credentials, out or DEFAULT_TENANT, state=state,
                   hardware=hardware, speed=speed, as_json=as_json,
                   pipelined=False if sequential else None)
        return
    from asab.cli.wiring import hardware_bench, simulated_bench
    from asab.requests import load_jobs
    from asab.runner import run_jobs

    cfg = load(config, operable=True)
    bench_dir = bench_folder(config)
    jobs_path = jobs or bench_dir / "demo_requests.json"
    try:
        requests = load_jobs(jobs_path)
    except RequestError as exc:
        fail(str(exc))
    run_dir = out or Path("runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    resume = _earlier_run(run_dir, requests)
    ledger_dir = state_folder(cfg, state, out=run_dir)
    store = open_ledger(cfg, ledger_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create run folder {run_dir}: {exc}")
    if not as_json:
        console.print(ledger_line(store), markup=False, highlight=False, soft_wrap=True)
        if resume:
            console.print(f"carrying on the run in {run_dir}: its final jobs are kept, the "
                          "jobs that waited for the operator run now", markup=False,
                          highlight=False, soft_wrap=True)
    opened = (hardware_bench(cfg, bench_dir, state=run_dir, ledger_dir=ledger_dir) if hardware
              else simulated_bench(cfg, run_dir / "instruments", speed=speed, state=run_dir,
                                   ledger_dir=ledger_dir))
    with opened as bench:
        from asab.cli.display import RunDisplay

        with RunDisplay(console, quiet=as_json) as display:
            kwargs = {"resume": True} if resume else {}
            try:
                summary = run_jobs(bench, requests, run_dir, progress=display.update,
                                   pipelined=not sequential, bench_file=config_path(config),
                                   **kwargs)
            except RequestError as exc:  # an earlier record it cannot carry on from
                fail(str(exc))
    if gantt is not None:
        _write_gantt(run_dir, gantt, sequential, as_json)
    if as_json:
        emit_json(summary.model_dump_json())
    else:
        from asab.cli.display import print_summary

        print_summary(console, summary)
    if summary.failed:
        raise typer.Exit(3)
    if summary.waiting:
        again = ["asab", "run", *(["--config", str(config)] if config else []),
                 *(["--jobs", str(jobs)] if jobs else []), "--out", str(run_dir),
                 "--state", str(ledger_dir), *(["--speed", f"{speed:g}"] if speed else []),
                 *(["--hardware"] if hardware else []), *(["--sequential"] if sequential else [])]
        if not as_json:
            _say_waiting(summary.waiting, shlex.join(again))
        raise typer.Exit(4)


def _earlier_run(run_dir: Path, requests) -> bool:
    """Whether ``run_dir`` holds an earlier run of ``requests`` to carry on (records/ and
    summary.json); exits 1 for any other non-empty folder or a run of other requests."""
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        fail(f"run folder {run_dir} exists and is not a folder; choose another --out")
    if not any(run_dir.iterdir()):
        return False
    summary = run_dir / "summary.json"
    if not ((run_dir / "records").is_dir() and summary.is_file()):
        fail(f"run folder {run_dir} exists and is neither empty nor an earlier run (records/ "
             "and summary.json); choose another --out")
    try:
        rows = json.loads(summary.read_text(encoding="utf-8"))["rows"]
        earlier = [str(r.get("request") or "") for r in rows]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        fail(f"run folder {run_dir}: summary.json is unreadable ({exc}); choose another --out")
    given = [_request_id(r) for r in requests]
    if len(earlier) != len(given) or any(a and b and a != b for a, b in zip(earlier, given)):
        fail(f"run folder {run_dir} holds a run of other requests ({len(earlier)} jobs); "
             "carry a run on with the jobs file it ran, or choose another --out")
    return True


def _request_id(item) -> str:
    """The id a job record keeps for ``item`` (its uuid, else its id), "" when unsure."""
    rid = (item.get("uuid") or item.get("id") or "") if isinstance(item, dict) else ""
    return rid if isinstance(rid, str) and len(rid) <= 64 else ""


def _say_waiting(waiting: str, again: str) -> None:
    """The waiting reason, the fix and the command that carries the run on (one line each,
    never wrapped: the command is copied as it is)."""
    console.print("[bold yellow]The bench waits for the operator:[/] " + escape(waiting),
                  soft_wrap=True)
    console.print("Fix it, tell the ledger ([bold]asab bench refill[/] / [bold]asab bench "
                  "empty[/]), then run the same command again to carry this run on:",
                  soft_wrap=True)
    console.print(f"  {again}", markup=False, highlight=False, soft_wrap=True)


# Command groups in their own modules register themselves on ``app`` when imported.
from asab.cli import commands  # noqa: E402,F401


def main() -> None:  # pragma: no cover - console entry point
    """Console entry point: library errors become one clear line and exit code 1."""
    import sys

    try:
        app()
    except ConfigError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(1)
    except AsabError as exc:
        err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}")
        sys.exit(1)
