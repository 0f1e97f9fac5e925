"""``asab import-legacy``: a bench folder of the original ASAB project → asab's bench.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from asab.cli.app import JsonOpt, app, console, emit_json, print_problems
from asab.errors import ConfigError


@app.command("import-legacy")
def import_legacy(
        src: Annotated[Path, typer.Argument(help="original-ASAB layout folder (nodes/edges/tubing "
                                            "CSV, valvePositionDict.txt, syringes.txt)")],
        out: Annotated[Path, typer.Option("--out", help="new bench folder to write (must not "
                                          "exist, or be empty)")],
        first_wins: Annotated[bool, typer.Option(
            "--first-wins", help="accept edge labels defined twice: the first row wins, the "
            "later rows are left out of the written edges.csv")] = False,
        as_json: JsonOpt = False) -> None:
    """Write a bench folder with a bench.toml from the original ASAB project's files.

    The Python dict files are read as data (ast.literal_eval), never executed. Every value
    that had to be guessed is printed with the file and line it came from; what the files do
    not say (pumps' syringes, instruments, densimeter, balance, cleaning pumps) is left as a
    commented template at the end of bench.toml, and asab check-config lists each as a
    problem until it is filled in.

    Exit 1: a source file is missing or unreadable, the layout has problems (duplicate edge
    labels: add --first-wins), or --out is not empty.

    Example: asab import-legacy hardware_configs/hiu_2022 --out runs/hiu_2022 --first-wins
    """
    from asab.config.legacy_import import import_legacy as run_import

    try:
        result = run_import(src, out, first_wins=first_wins)
    except ConfigError as exc:
        print_problems(exc.problems, src, as_json=as_json)
        raise typer.Exit(1)
    if as_json:
        emit_json({"ok": True, "out": str(result.out), "files": result.files,
                   "notes": [{"file": n.file, "row": n.line, "text": n.text} for n in result.notes],
                   "gaps": result.gaps})
        return
    console.print(f"wrote {result.out}: {', '.join(result.files)}", markup=False)
    console.print(f"guessed or decided ({len(result.notes)}):")
    for note in result.notes:
        console.print(f"  - {note}", markup=False, highlight=False)
    console.print(f"not in the source, to fill in bench.toml ({len(result.gaps)}):")
    for gap in result.gaps:
        console.print(f"  - {gap}", markup=False, highlight=False)
    console.print(f"next: asab check-config {result.out}", markup=False)
