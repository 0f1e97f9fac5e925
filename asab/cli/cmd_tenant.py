"""``asab tenant`` and ``asab journal``: serve FINALES2 requests unattended, and show what happened.

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
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from asab.cli.app import ConfigOpt, JsonOpt, app, config_path, console, emit_json, fail, load

StateOpt = Annotated[Path, typer.Option(
    "--state", help="tenant folder: journal.sqlite, job records, raw exports, vial occupancy")]
DEFAULT_STATE = Path("runs") / "tenant"


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
def _bench(cfg, state: Path, hardware: bool, speed: float) -> Iterator:
    from asab.cli.wiring import hardware_bench, simulated_bench

    opened = hardware_bench(cfg) if hardware else simulated_bench(cfg, state / "instruments",
                                                                  speed=speed)
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


def serve_broker(config: Path | None, broker: str | None, credentials: Path | None, state: Path,
                 *, hardware: bool = False, speed: float = 0.0, until_idle: bool = False,
                 poll: float | None = None, max_failures: int | None = None):
    """Run the tenant worker; returns the :class:`~asab.broker.tenant.CycleReport` list."""
    from asab.broker.client import FinalesClient
    from asab.broker.journal import Journal
    from asab.broker.tenant import Tenant

    cfg = load(config)
    settings, tenant_settings = _settings(config, credentials, broker)
    updates = {k: v for k, v in (("poll_interval", poll), ("max_failures", max_failures))
               if v is not None}
    tenant_settings = tenant_settings.model_copy(update=updates)
    state.mkdir(parents=True, exist_ok=True)
    stop = _stop_on_signals()
    with FinalesClient(settings) as client, Journal(state / "journal.sqlite") as journal:
        client.check_tenant()
        with _bench(cfg, state, hardware, speed) as bench:
            worker = Tenant(bench, client, journal, state, tenant_settings,
                            progress=lambda uid, step: console.log(f"{uid[:8]} {step}"))
            return worker.serve(stop, until_idle=until_idle)


@app.command()
def tenant(config: ConfigOpt = None,
           broker: Annotated[Optional[str], typer.Option(
               "--broker", help="broker URL (default: broker.toml or $ASAB_BROKER_URL)")] = None,
           credentials: Annotated[Optional[Path], typer.Option(
               help="broker.toml with [broker] credentials (default: in the bench folder)")] = None,
           state: StateOpt = DEFAULT_STATE,
           hardware: Annotated[bool, typer.Option("--hardware", help="real instruments")] = False,
           speed: Annotated[float, typer.Option(help="simulated bench: 0 = virtual time")] = 0.0,
           poll: Annotated[Optional[float], typer.Option(help="s between idle polls")] = None,
           max_failures: Annotated[Optional[int], typer.Option(help="skip a request after "
                                                               "this many failures")] = None,
           until_idle: Annotated[bool, typer.Option("--until-idle", help="stop when nothing is "
                                                    "pending and nothing is unposted")] = False,
           as_json: JsonOpt = False) -> None:
    """Serve the broker's density and electrolyte requests with this bench until stopped.

    SIGTERM or Ctrl-C lets the running job finish, journals it and stops. The journal in
    --state makes a restart resume: unposted results are posted, interrupted requests given
    back, served requests never served again.

    Example: asab tenant --broker http://127.0.0.1:8000 --state runs/tenant --until-idle
    """
    reports = serve_broker(config, broker, credentials, state, hardware=hardware, speed=speed,
                           until_idle=until_idle, poll=poll, max_failures=max_failures)
    totals = {k: sum(len(getattr(r, k)) for r in reports)
              for k in ("served", "posted", "rejected", "failed", "skipped")}
    if as_json:
        emit_json({"state": str(state), **totals})
    else:
        console.print(", ".join(f"{k} {v}" for k, v in totals.items()))


@app.command()
def journal(state: StateOpt = DEFAULT_STATE,
            request: Annotated[Optional[str], typer.Option(help="show every event of one request")] = None,
            as_json: JsonOpt = False) -> None:
    """Show the tenant journal: each request's state, failures and result uuid.

    Example: asab journal --state runs/tenant --json
    """
    from asab.broker.journal import Journal
    from asab.broker.tenant import journal_summary

    path = state / "journal.sqlite"
    if not path.is_file():
        fail(f"no journal at {path}")
    with Journal(path) as jr:
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
    table = Table("request", "state", "failures", "result", "why", title=f"journal {path}")
    for r in rows:
        table.add_row(r["request"], r["state"], str(r["failures"]), r["result_uuid"] or "",
                      (r["why"] or "")[:60])
    console.print(table)
