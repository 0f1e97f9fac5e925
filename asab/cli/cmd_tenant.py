"""``asab tenant``, ``asab journal`` and ``asab vials``: serve FINALES2 requests unattended, show
what happened, and release vials an operator emptied. ``asab run --broker`` calls
:func:`serve_broker` and :func:`print_requests` from here.

Credentials never come from the command line: they are read from ``broker.toml`` (section
``[broker]``: url, username, password, tenant_uuid; optional section ``[tenant]``: the
:class:`~asab.broker.tenant.TenantSettings`) in the bench folder or the file given with
``--credentials``, and from the environment (``ASAB_BROKER_URL``, ``ASAB_BROKER_USERNAME``,
``ASAB_BROKER_PASSWORD``, ``ASAB_TENANT_UUID``), which wins over the file. ``--broker`` sets
only the URL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from asab.cli.app import (
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
    open_ledger,
    state_folder,
)

TenantOpt = Annotated[Path, typer.Option(
    "--out", help="tenant folder: journal.sqlite, job records, raw exports, vial occupancy "
    "(the bench ledger is in the bench state folder, --state of asab tenant)")]
DEFAULT_TENANT = Path("runs") / "tenant"


def _settings(config: Path | None, credentials: Path | None, broker: str | None):
    from asab.broker.settings import BrokerSettings
    from asab.broker.tenant import TenantSettings

    source = credentials or config_path(config)
    env = dict(os.environ)
    if broker:
        env["ASAB_BROKER_URL"] = broker
    settings = BrokerSettings.load(source, env=env)
    file = source / "broker.toml" if source.is_dir() else source
    tenant = {}
    if file.is_file():
        with file.open("rb") as fh:
            tenant = tomllib.load(fh).get("tenant", {})
    return settings, TenantSettings.model_validate(tenant)


@contextlib.contextmanager
def _bench(cfg, folder: Path, hardware: bool, speed: float, config: Path | None = None,
           ledger_dir: Path | None = None) -> Iterator:
    """The bench for the tenant folder ``folder``, its ledger in ``ledger_dir``."""
    from asab.cli.wiring import hardware_bench, simulated_bench

    bench_dir = bench_folder(config)  # the calibration file is in the bench folder
    opened = (hardware_bench(cfg, bench_dir, state=folder, ledger_dir=ledger_dir) if hardware
              else simulated_bench(cfg, folder / "instruments", speed=speed, state=folder,
                                   ledger_dir=ledger_dir))
    with opened as bench:
        yield bench


def _stop_on_signals() -> threading.Event:
    """SIGTERM/SIGINT set the event: the current job finishes, then the worker stops."""
    stop = threading.Event()

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread (tests)
            signal.signal(sig, handler)
    return stop


def _check_tenant(client, strict: bool) -> None:
    """Check our tenant uuid with the broker. Unreachable (transient): go on — results waiting
    in the journal are posted once the broker answers. Unknown or inactive tenant, or bad
    credentials (permanent), or unreachable with ``strict``: raise, the command exits 1."""
    import logging

    from asab.errors import BrokerError

    try:
        client.check_tenant()
    except BrokerError as exc:
        if exc.permanent or strict:
            raise
        logging.getLogger(__name__).warning(
            "broker not reachable at start (%s); starting anyway, it is polled every cycle", exc)


def serve_broker(config: Path | None, broker: str | None, credentials: Path | None, folder: Path,
                 *, state: Path | None = None, hardware: bool = False, speed: float = 0.0,
                 until_idle: bool = False, poll: float | None = None,
                 max_failures: int | None = None, max_interruptions: int | None = None,
                 quiet: bool = False, pipelined: bool | None = None):
    """Run the tenant worker on tenant folder ``folder`` and the bench ledger of the bench
    state folder ``state`` (default :func:`asab.ledger.store.default_state_dir`); returns the
    :class:`~asab.broker.tenant.CycleReport` list.

    Progress lines go to stdout, or to stderr with ``quiet`` (for ``--json``).

    Raises:
        ConfigError: bad bench configuration or broker settings.
        BrokerError: the broker cannot be reached at start or does not know our tenant.
        JournalError: the journal in ``folder`` cannot be opened.
    """
    from asab.broker.client import FinalesClient
    from asab.broker.journal import Journal
    from asab.broker.tenant import Tenant

    cfg = load(config, operable=True)
    settings, tenant_settings = _settings(config, credentials, broker)
    updates = {k: v for k, v in (("poll_interval", poll), ("max_failures", max_failures),
                                 ("max_interruptions", max_interruptions)) if v is not None}
    if pipelined is not None:
        updates["pipelined"] = pipelined
    tenant_settings = tenant_settings.model_copy(update=updates)
    ledger_dir = state_folder(cfg, state, out=folder)
    store = open_ledger(cfg, ledger_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stop = _stop_on_signals()
    out = err_console if quiet else console
    if not quiet:
        out.print(ledger_line(store), markup=False, highlight=False, soft_wrap=True)
    with FinalesClient(settings) as client, Journal(folder / "journal.sqlite") as journal:
        _check_tenant(client, strict=until_idle)
        with _bench(cfg, folder, hardware, speed, config, ledger_dir) as bench:
            worker = Tenant(bench, client, journal, folder, tenant_settings,
                            progress=lambda uid, step: out.log(f"{uid[:8]} {step}"),
                            bench_file=config_path(config))
            return worker.serve(stop, until_idle=until_idle)


def run_broker(config: Path | None, broker: str | None, credentials: Path | None, folder: Path,
               *, state: Path | None = None, hardware: bool = False, speed: float = 0.0,
               as_json: bool = False, pipelined: bool | None = None) -> None:
    """``asab run --broker``: serve until idle, then show the requests this run touched.

    Prints a table (or with ``as_json`` one JSON object: ``out``, the tenant folder, the
    report totals and ``requests``, the :func:`requests_since` rows).

    Raises:
        typer.Exit: code 3 when a request of this run failed.
    """
    start = time.time()
    reports = serve_broker(config, broker, credentials, folder, state=state, hardware=hardware,
                           speed=speed, until_idle=True, quiet=as_json, pipelined=pipelined)
    rows = requests_since(folder, start)
    totals = {k: sum(len(getattr(r, k)) for r in reports)
              for k in ("served", "posted", "rejected", "failed", "skipped")}
    if as_json:
        emit_json({"out": str(folder), **totals, "requests": rows})
    else:
        print_requests(rows, f"requests of this run (journal {folder / 'journal.sqlite'})")
        console.print(", ".join(f"{k} {v}" for k, v in totals.items()))
    if any(r["failed"] for r in rows):
        raise typer.Exit(3)


def requests_since(folder: Path, since: float) -> list[dict]:
    """Journal summary rows (:func:`~asab.broker.tenant_state.journal_summary`) of the requests
    with an event at or after ``since`` (epoch s), each with a ``failed`` flag: the request
    ended without a result after a failure or interruption, or its result says ``success``
    false."""
    from asab.broker.journal import Journal
    from asab.broker.tenant_state import journal_summary

    with Journal(folder / "journal.sqlite") as jr:
        rows = [r for r in journal_summary(jr) if r["since"] >= since]
    for r in rows:
        unserved = r["state"] not in ("posted", "measured")
        r["failed"] = r["success"] is False or (
            unserved and (r["failures"] > 0 or r["interruptions"] > 0))
    return rows


def print_requests(rows: list[dict], title: str) -> None:
    """A table of journal summary rows: request, state, result uuid, failures, why."""
    table = Table("request", "state", "result", "failures", "why", title=title)
    for r in rows:
        state = f"[red]{r['state']}[/]" if r.get("failed") else r["state"]
        fails = str(r["failures"]) + (f" (+{r['interruptions']} stops)"
                                      if r.get("interruptions") else "")
        table.add_row(r["request"], state, r["result_uuid"] or "", fails, (r["why"] or "")[:60])
    console.print(table)


@app.command()
def tenant(config: ConfigOpt = None,
           broker: Annotated[Optional[str], typer.Option(
               "--broker", help="broker URL (default: broker.toml or $ASAB_BROKER_URL)")] = None,
           credentials: Annotated[Optional[Path], typer.Option(
               help="broker.toml holding the credentials (default: in the bench folder)")] = None,
           out: TenantOpt = DEFAULT_TENANT,
           state: StateOpt = None,
           hardware: Annotated[bool, typer.Option("--hardware", help="real instruments")] = False,
           speed: Annotated[float, typer.Option(help="simulated bench: 0 = virtual time")] = 0.0,
           poll: Annotated[Optional[float], typer.Option(help="s between idle polls")] = None,
           max_failures: Annotated[Optional[int], typer.Option(help="skip a request after "
                                                               "this many failures")] = None,
           max_interruptions: Annotated[Optional[int], typer.Option(
               help="skip a request after the tenant stopped this many times during its "
               "job")] = None,
           until_idle: Annotated[bool, typer.Option("--until-idle", help="stop when nothing is "
                                                    "pending and nothing is unposted")] = False,
           pipelined: Annotated[Optional[bool], typer.Option(
               "--pipelined/--sequential", help="prepare the next density request while the "
               "current one is measured, or one job after another (default: [tenant] pipelined "
               "in broker.toml, else sequential)")] = None,
           as_json: JsonOpt = False) -> None:
    """Serve the broker's density and electrolyte requests with this bench until stopped.

    SIGTERM or Ctrl-C lets the jobs on the bench finish (with --pipelined at most two, the
    one being measured and the next one being prepared), journals them and stops. The journal in
    the tenant folder (--out) makes a restart resume: unposted results are posted,
    interrupted requests given back, served requests never served again. The bench ledger in
    the bench state folder (--state) is shared with asab run and asab serve on this bench.

    Example: asab tenant --broker http://127.0.0.1:8000 --out runs/tenant --until-idle
    """
    reports = serve_broker(config, broker, credentials, out, state=state, hardware=hardware,
                           speed=speed, until_idle=until_idle, poll=poll,
                           max_failures=max_failures, max_interruptions=max_interruptions,
                           quiet=as_json, pipelined=pipelined)
    totals = {k: sum(len(getattr(r, k)) for r in reports)
              for k in ("served", "posted", "rejected", "failed", "skipped")}
    if as_json:
        emit_json({"out": str(out), **totals})
    else:
        console.print(", ".join(f"{k} {v}" for k, v in totals.items()))


@app.command()
def journal(out: TenantOpt = DEFAULT_TENANT,
            request: Annotated[Optional[str], typer.Option(help="show every event of one request")] = None,
            as_json: JsonOpt = False) -> None:
    """Show the tenant journal: each request's state, failures and result uuid.

    Example: asab journal --out runs/tenant --json
    """
    from asab.broker.journal import Journal
    from asab.broker.tenant import journal_summary

    path = out / "journal.sqlite"
    if not path.is_file():
        fail(f"no journal at {path}")
    with Journal(path) as jr:
        jr.check_records(out / "records")
        if request:
            events = [e.model_dump(mode="json") for e in jr.history(request)]
            if not events:
                fail(f"request {request} is not in the journal")
            if as_json:
                emit_json(events)
            else:
                for e in events:
                    console.print(f"{e['time']:.3f} {e['state']:<10} {e['payload']}")
            return
        rows = journal_summary(jr)
    if as_json:
        emit_json(rows)
        return
    print_requests(rows, f"journal {path}")


@app.command()
def vials(out: TenantOpt = DEFAULT_TENANT,
          release: Annotated[Optional[list[str]], typer.Option(
              "--release", help="mark this vial empty (after emptying or replacing it)")] = None,
          as_json: JsonOpt = False) -> None:
    """Show which vials of the tenant folder hold an electrolyte; release emptied ones.

    A vial marked 'failed' may hold part of an electrolyte from a stopped or failed job: empty
    it, then release it. (asab bench empty VIAL --vials FOLDER does both: it tells the bench
    ledger the vial is empty and releases it here.)

    Example: asab vials --out runs/tenant --json
    """
    from asab.actions.vial_state import VIAL_STATE_FILE, VialRegistry

    registry = VialRegistry(out / VIAL_STATE_FILE)
    occupied = registry.occupied()
    unknown = [v for v in release or [] if v not in occupied]
    if unknown:
        fail(f"not occupied: {', '.join(unknown)} (occupied: {', '.join(occupied) or 'none'})")
    for vial in release or []:
        registry.release(vial)
    rows = [o.model_dump(mode="json") for o in registry.occupied().values()]
    if as_json:
        emit_json(rows)
        return
    table = Table("vial", "status", "request", "job", "volume / mL", title=f"vials {out}")
    for r in rows:
        volume = "" if r["volume"] is None else f"{r['volume']:.3f}"
        table.add_row(r["vial"], r["status"], r["request_id"], r["job_id"], volume)
    console.print(table if rows else "no vial is occupied")
