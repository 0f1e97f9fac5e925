"""``asab draw``: an image of the tubing network with a route and valve positions highlighted."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from asab.cli.app import ConfigOpt, JsonOpt, app, console, emit_json, fail, load
from asab.errors import RoutingError


def _parse_valves(items: list[str]) -> dict[str, str]:
    """``["V6=4", "V10=V10.3"]`` → ``{"V6": "4", "V10": "V10.3"}`` (exit 2 if malformed)."""
    parsed: dict[str, str] = {}
    for item in items:
        name, sep, position = item.partition("=")
        if not sep or not name or not position:
            raise typer.BadParameter(f"{item!r} is not VALVE=POSITION (e.g. V6=4 or V6=V6.5)",
                                     param_hint="--valve")
        parsed[name.strip()] = position.strip()
    return parsed


@app.command()
def draw(source: Annotated[Optional[str], typer.Argument(help="route start node")] = None,
         target: Annotated[Optional[str], typer.Argument(help="route end node")] = None,
         via: Annotated[Optional[list[str]], typer.Option("--via", help="pass these nodes, in order")] = None,
         avoid: Annotated[Optional[list[str]], typer.Option("--avoid", help="never pass these nodes")] = None,
         valve: Annotated[Optional[list[str]], typer.Option(
             "--valve", help="show valve VALVE at POSITION (0-based index or port node), "
             "e.g. V10=3; repeatable")] = None,
         out: Annotated[Path, typer.Option("--out", "-o", help="image file to write (.png or .svg)")] = Path("tubing.svg"),
         fmt: Annotated[Optional[str], typer.Option(
             "--format", help="png | svg (default: from the --out suffix)")] = None,
         config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Draw the tubing network as PNG/SVG: valves with their active channel, vessels, a route.

    With SOURCE TARGET: the least-dead-volume route, its dead volume in the title.
    --valve V=POS shows more valve positions (index or port node).
    Exit 1: unknown node or valve, no route, --valve contradicting the route.

    Example: asab draw A0.0 densiViscoIN --via M1.0 --out route.svg
    """
    from asab.tubing import TubingGraph
    from asab.tubing.draw import draw as draw_image
    from asab.tubing.draw import vessel_kinds

    if (source is None) != (target is None):
        raise typer.BadParameter("give both SOURCE and TARGET, or neither", param_hint="SOURCE TARGET")
    if (via or avoid) and source is None:
        raise typer.BadParameter("--via/--avoid need SOURCE and TARGET", param_hint="--via")
    positions = _parse_valves(valve or [])
    cfg = load(config)
    graph = TubingGraph.from_config(cfg)
    try:
        route = None if source is None else graph.route(source, target, via=via or (),
                                                        avoid=avoid or ())
        written = draw_image(graph, route, positions, path=out, fmt=fmt, vessels=vessel_kinds(cfg),
                             title=None if route else f"tubing network of {cfg.name}")
    except (RoutingError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out}: {exc}")
    if as_json:
        emit_json({"path": str(written), "route": route.to_dict() if route else None})
        return
    console.print(f"wrote {written}")
    if route is not None:
        console.print(" → ".join(route.nodes) + f"  (dead volume {route.dead_volume:.4f} mL)")
