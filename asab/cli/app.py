"""The typer application and the helpers every ``asab`` command shares.

Commands live in modules of this package (``main`` for the core ones, one module per larger
command group); each registers itself on :data:`app` with ``@app.command()`` and is imported
by :mod:`asab.cli.main`.

Exit codes (:data:`EXIT_CODES`, shown at the end of ``asab --help`` and in README.md):

* 0 — success;
* 1 — bad input or refused: configuration problems, unknown node or valve, no route, not
  makeable (policy ``reject``), malformed composition or job file, any library error;
* 2 — usage error: unknown option, missing or malformed argument (typer/click);
* 3 — ``asab run`` finished but at least one job failed on the bench;
* 4 — the bench waits for the operator: a consumable ran out (``asab run``: jobs were
  refused for it, the same command carries on after the fix; ``asab plan``: the plan is
  refused for it). Fix it, tell the ledger (``asab bench refill/empty``) and run again.

Every command's help ends with an ``Example:`` line that works on the bundled bench
(tests/test_cli_help.py runs them).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

#: exit code → meaning, for ``asab --help``, README.md and the tests.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "bad input or refused (configuration problems, unknown node or valve, no route, "
       "not makeable, malformed composition or job file)",
    2: "usage error (unknown option, missing or malformed argument)",
    3: "asab run: at least one job failed on the bench",
    4: "the bench waits for the operator: a consumable ran out (fix it, tell the ledger with "
       "asab bench refill/empty, run the same command again)",
}

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="asab: autonomous synthesis and analysis of battery electrolytes.",
                  epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items())
                  + ". Each command's --help ends with an example.")
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", help="bench folder (with bench.toml) or bench.toml; "
    "default $ASAB_CONFIG, else the bundled hiu_2023 bench")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
StateOpt = Annotated[Optional[Path], typer.Option(
    "--state", envvar="ASAB_STATE", show_envvar=False,
    help="bench state folder holding the bench ledger (ledger.json: stock, solvent, wastes, "
    "balance vessel, vials, syringes, lines), shared by run, serve, tenant, plan and bench; "
    "default $ASAB_STATE, else runs/state/<bench name> under the working directory")]

RUN_FOLDER_MARKS = ("journal.sqlite", "records", "summary.json")
"""What a run or tenant folder holds and a bench state folder never does."""


def config_path(path: Path | None) -> Path:
    """The configuration to use: ``--config``, else ``$ASAB_CONFIG``, else the bundled bench
    (:func:`asab.config.benches.choose_bench`)."""
    from asab.config.benches import choose_bench  # lazily: --help stays fast

    return choose_bench(path).path


def bench_folder(path: Path | None) -> Path:
    """The folder of the chosen bench (where demo requests, broker.toml, calibration live)."""
    from asab.config.benches import choose_bench

    return choose_bench(path).folder


def load(path: Path | None, *, first_wins: bool = False, operable: bool = False):
    """Load the bench chosen by :func:`config_path`.

    Args:
        path: the ``--config`` value.
        first_wins: accept duplicate edge labels (the first row wins).
        operable: also require every route a job needs (commands that run jobs), as
            ``asab check-config`` checks (:func:`asab.tubing.operability.check_operable`).

    Raises:
        ConfigError: no bench file where the choice points (the message says how the bench
            was chosen and how to choose another), the bench's problems, or (``operable``)
            every route a job needs that does not exist.
    """
    from asab.config.benches import choose_bench
    from asab.errors import ConfigError

    loaded, report = load_checked(choose_bench(path), first_wins=first_wins, routes=operable)
    if report is not None and report.problems:
        raise ConfigError(report.problems)
    return loaded.config


def load_checked(choice, *, first_wins: bool = False, routes: bool = True):
    """Load a chosen bench and (``routes``) check every route a job needs.

    Returns:
        ``(LoadedBench, OperabilityReport | None)``.

    Raises:
        ConfigError: no bench file where the choice points, or the bench's problems.
    """
    from asab.config.benches import require_bench_file
    from asab.config.loader import load_bench_report
    from asab.tubing.operability import check_operable

    require_bench_file(choice)
    loaded = load_bench_report(choice.path, first_wins=first_wins)
    if not routes:
        return loaded, None
    return loaded, check_operable(loaded.config, stock_file=loaded.stock_file,
                                  stock_lines=dict(loaded.stock_lines))


def print_problems(problems, where, *, as_json: bool) -> None:
    """Every problem of a refused input: as JSON on stdout, or a counted list on stderr."""
    if as_json:
        emit_json({"ok": False, "problems": [problem_json(p) for p in problems]})
        return
    err_console.print(f"[bold red]{len(problems)} problem(s) in {escape(str(where))}:[/]")
    for p in problems:
        err_console.print(f"  - {p}", markup=False)


def problem_json(p) -> dict:
    """A :class:`~asab.errors.Problem` as JSON: file, row (line or null), reason."""
    return {"file": p.file, "row": p.row, "reason": p.reason}


def emit_json(data) -> None:
    """Write ``data`` (JSON text or a JSON-ready object) to stdout, unwrapped and uncoloured."""
    typer.echo(data if isinstance(data, str) else json.dumps(data, indent=2))


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` as an error on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def state_folder(cfg, state: Path | None, *, out: Path | None = None) -> Path:
    """The bench state folder: ``--state`` (or ``$ASAB_STATE``), else
    :func:`asab.ledger.store.default_state_dir`. Exits 1 when it is a run or tenant folder
    (``--state`` meant that before it named the bench state) or the same folder as ``out``."""
    from asab.ledger.store import default_state_dir

    folder = state if state is not None else default_state_dir(cfg)
    for mark in RUN_FOLDER_MARKS:
        if (folder / mark).exists():
            fail(f"--state {folder} holds {mark}: that is a run or tenant folder (give it as "
                 "--out); --state is the bench state folder holding ledger.json")
    if out is not None and folder.resolve() == out.resolve():
        fail(f"--state and --out are both {folder}: the bench state folder (its ledger) and "
             "the run or tenant folder must differ")
    return folder


def open_ledger(cfg, folder: Path):
    """The :class:`~asab.ledger.store.LedgerStore` of ``folder``, only read (nothing is
    written until the caller changes it). Exits 1 with one line when the ledger file is
    unreadable, of another version or of another bench."""
    from asab.errors import ConfigError
    from asab.ledger.store import LedgerStore

    try:
        return LedgerStore(folder, cfg)
    except ConfigError as exc:
        fail(exc.problems[0].reason)


def ledger_line(store) -> str:
    """One line saying which ledger a command uses and whether it continues or starts."""
    if store.exists:
        import datetime as dt

        written = dt.datetime.fromtimestamp(store.path.stat().st_mtime, dt.UTC)
        return (f"bench ledger {store.path} (continued: the bench as last written, "
                f"{written.isoformat(timespec='seconds')})")
    return (f"bench ledger {store.path} (new: a fresh bench, reservoirs and solvent full, "
            "wastes and vials empty, lines dry; correct it with asab bench refill/empty/set-line)")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
