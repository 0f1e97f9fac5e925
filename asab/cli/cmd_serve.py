"""``asab serve``: the per-device HTTP servers and the actions server on one bench."""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from asab.cli.app import (
    ConfigOpt,
    StateOpt,
    app,
    bench_folder,
    err_console,
    fail,
    ledger_line,
    load,
    open_ledger,
    state_folder,
)
from asab.errors import ConfigError


@app.command()
def serve(config: ConfigOpt = None,
          hardware: Annotated[bool, typer.Option(
              "--hardware", help="drive the real instruments instead of the simulated bench")] = False,
          speed: Annotated[float, typer.Option(
              help="simulated bench: real time × speed (0 = virtual time, waits are instant)")] = 1.0,
          host: Annotated[str | None, typer.Option(
              help="bind address (default: servers.host of bench.toml, 127.0.0.1)")] = None,
          base_port: Annotated[int | None, typer.Option(
              min=1, max=65532, help="ports base, +1, +2, +3 for pumps, balance, densimeter, "
              "actions (default: servers.ports of bench.toml)")] = None,
          workdir: Annotated[Path | None, typer.Option(
              help="simulated bench: folder for the instruments' exchange files "
              "(default a temporary folder)")] = None,
          out: Annotated[Path, typer.Option(
              "--out", help="serve folder: every job's record (records/) and the instruments' "
              "raw exports (raw/), as asab run writes them; a restarted server lists the "
              "jobs kept there")] = Path("runs/serve"),
          state: StateOpt = None) -> None:
    """Serve pumps & valves, balance, densimeter and actions over HTTP, each on its own port.

    Every request needs ``Authorization: Bearer <token>``, the token coming from
    $ASAB_SERVER_TOKEN (or the token of the servers section of bench.toml). OpenAPI docs at
    http://HOST:PORT/docs?token=TOKEN (the API description alone also takes ?token=).
    With --hardware the pump calibration file of the bench folder is applied when present.
    Every job is recorded in --out (records/NNNN_<kind>_<id>.json, measurement exports in
    raw/); a server started again on the same folder lists them (a job that was running
    when the server stopped as interrupted). The live bench page is at
    http://HOST:ACTIONS_PORT/?token=TOKEN. The bench ledger in --state is read at the start (a simulated bench starts its world from
    it) and kept up to date; GET /bench/status and POST /bench/refill, /bench/empty,
    /bench/set-line on the actions server show and correct it.

    Example: ASAB_SERVER_TOKEN=change-me asab serve --speed 10
    """
    from asab.servers.history import FolderInUse, JobHistory
    from asab.servers.run import resolve_token, run_servers

    cfg = load(config)
    settings = cfg.servers
    updates: dict = {"host": host} if host else {}
    if base_port is not None:
        updates["ports"] = settings.ports.model_validate(
            dict(zip(("pumps", "balance", "densimeter", "actions"), range(base_port, base_port + 4))))
    settings = settings.model_copy(update=updates)
    try:
        token = resolve_token(settings)
    except ConfigError as exc:
        fail(exc.problems[0].reason)
    if not math.isfinite(speed) or speed < 0:
        fail(f"--speed must be 0 (virtual time) or a positive number, not {speed}")
    ledger_dir = state_folder(cfg, state, out=out)
    try:
        history = JobHistory(out, cfg.name)
    except FolderInUse as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot use --out {out}: {exc.strerror or exc}")
    kept = sum(1 for _ in history.records.glob("*.json"))
    err_console.print(ledger_line(open_ledger(cfg, ledger_dir)), markup=False, highlight=False,
                      soft_wrap=True)

    def ready() -> None:
        urls = ", ".join(f"{name} http://{settings.host}:{port}"
                         for name, port in settings.ports.model_dump().items())
        err_console.print(f"asab serve ready on {cfg.name}: {urls}", highlight=False, soft_wrap=True)
        err_console.print(f"jobs recorded in {history.records} ({kept} earlier); live page "
                          f"http://{settings.host}:{settings.ports.actions}/?token=<token>",
                          highlight=False, soft_wrap=True, markup=False)

    with contextlib.ExitStack() as stack:
        bench = stack.enter_context(_open(cfg, config, hardware, speed, workdir, stack,
                                          ledger_dir, out))
        try:
            run_servers(bench, settings, token, on_started=ready,
                        history=history)
        except ConfigError as exc:
            fail(exc.problems[0].reason)


def _open(cfg, config: Path | None, hardware: bool, speed: float, workdir: Path | None,
          stack: contextlib.ExitStack, ledger_dir: Path, out: Path):
    from asab.cli.wiring import hardware_bench, simulated_bench

    if hardware:
        return hardware_bench(cfg, bench_folder(config), ledger_dir=ledger_dir, state=out)
    folder = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="asab-serve-")))
    return simulated_bench(cfg, folder, speed=speed, ledger_dir=ledger_dir, state=out)
