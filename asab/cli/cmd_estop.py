"""``asab estop``: the operator's e-stop on the bench PC, without HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from asab.cli.app import JsonOpt, app, console, emit_json, fail


@app.command()
def estop(out: Annotated[Optional[Path], typer.Option(
              "--out", help="only the process working on this run or tenant folder (its "
              "--out; default: every asab process of this user on this PC)")] = None,
          reason: Annotated[str, typer.Option(help="recorded with the latch")] = "",
          as_json: JsonOpt = False) -> None:
    """Stop every pump of the running asab serve / tenant / run, and latch its e-stop.

    Reaches the processes through a local socket (no HTTP, no token): it works when the
    servers do not answer. Motion stays refused until the e-stop is reset (POST /estop/reset
    on a server, or a restart).

    Exit 1: no running asab process answered.

    Example: asab estop --reason "leak at V3"
    """
    from asab.actions.local_estop import LocalEstopError, stop_all

    try:
        stopped = stop_all(reason, out)
    except LocalEstopError as exc:
        fail(str(exc))
    if as_json:
        emit_json([{"pid": s.pid, "bench": s.bench, "command": s.command, "state": s.state}
                   for s in stopped])
        return
    for s in stopped:
        where = f" ({s.state})" if s.state else ""
        console.print(f"stopped: pid {s.pid} {s.command} on bench {s.bench}{where}",
                      markup=False, highlight=False)
