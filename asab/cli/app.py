"""The typer application and the helpers every ``asab`` command shares.

Commands live in modules of this package (``main`` for the core ones, one module per larger
command group); each registers itself on :data:`app` with ``@app.command()`` and is imported
by :mod:`asab.cli.main`.

Exit codes (:data:`EXIT_CODES`, shown at the end of ``asab --help`` and in README.md):

* 0 — success;
* 1 — bad input or refused: configuration problems, unknown node or valve, no route, not
  makeable (policy ``reject``), malformed composition or job file, any library error;
* 2 — usage error: unknown option, missing or malformed argument (typer/click);
* 3 — ``asab run`` finished but at least one job failed on the bench.

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
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
