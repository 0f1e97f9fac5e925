"""Route-finding benchmark: ``python benchmarks/bench_routes.py [--repeat N]``.

Times :meth:`asab.tubing.TubingGraph.route` on

* the 2023 bench (hardware_configs/hiu_2023, loaded with asab.config.loader.load_bench), over
  all reservoir→pump, pump→mixer inlet (M1.x), mixer outlet (M1.0)→instrument inlet and
  instrument outlet→waste pairs (36 + 36 + 3 + 6 = 81 requests, valid or not);
* a synthetic layout ten times larger (benchmarks/synthetic_layout.py: 10 prefixed copies of the
  2023 layout chained by 9 extra rotary valves, 1609 nodes, 119 valves), over the same kinds of
  pairs with the source in copy 0 and the target in copy 0, 5 and 9 (243 requests).

Each request is timed ``--repeat`` times (default 5) and its median kept; the table gives the
median, 90th percentile and maximum of those over the requests of a row, how many requests
found a route or raised NoRouteError/ValveConflictError, and PASS/FAIL of the median against
the target (2 ms on the 2023 bench, 50 ms on the large layout).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

from synthetic_layout import chained_copies, prefixed

from asab.config.loader import load_bench
from asab.errors import NoRouteError, ValveConflictError
from asab.tubing import TubingGraph

ROOT = Path(__file__).resolve().parents[1]
PUMPS = ["A0.0", "B0.0", "C0.0", "D0.0", "E0.0", "F0.0"]
CELLS = ["densiVisco", "nmr", "electrochemistry"]
WASTES = ["waste_1", "waste_2"]
TARGETS_MS = {"hiu_2023": 2.0, "synthetic x10": 50.0}

Pair = tuple[str, str]


def pair_kinds() -> dict[str, list[Pair]]:
    """The request kinds on the 2023 node names."""
    return {
        "reservoir→pump": [(f"Reservoir{i}", p) for i in range(1, 7) for p in PUMPS],
        "pump→mixer inlet": [(p, f"M1.{i}") for p in PUMPS for i in range(1, 7)],
        "mixer→instrument": [("M1.0", f"{c}IN") for c in CELLS],
        "instrument→waste": [(f"{c}OUT", w) for c in CELLS for w in WASTES],
    }


def time_request(graph: TubingGraph, source: str, target: str, repeat: int) -> tuple[float, str]:
    """Median wall time (s) of ``repeat`` calls and the outcome."""
    times, outcome = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            graph.route(source, target)
            outcome = "route"
        except ValveConflictError:
            outcome = "conflict"
        except NoRouteError:
            outcome = "no route"
        times.append(time.perf_counter() - start)
    return statistics.median(times), outcome


def summarise(results: list[tuple[float, str]]) -> dict[str, float | int]:
    """Statistics over timed requests ``(seconds, outcome)``; times in ms."""
    ms = sorted(r[0] * 1e3 for r in results)
    outcomes = [r[1] for r in results]
    return {
        "n": len(ms), "route": outcomes.count("route"), "no route": outcomes.count("no route"),
        "conflict": outcomes.count("conflict"), "median": statistics.median(ms),
        "p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))], "max": ms[-1],
    }


def rows_for(
    layout: str, graph: TubingGraph, kinds: dict[str, list[Pair]], repeat: int
) -> list[list[str]]:
    """One table row per kind plus one for all requests of the layout."""
    target = TARGETS_MS[layout]
    timed = {kind: [time_request(graph, s, t, repeat) for s, t in pairs]
             for kind, pairs in kinds.items()}
    timed["all"] = [r for results in timed.values() for r in results]
    rows = []
    for kind, results in timed.items():
        st = summarise(results)
        verdict = "PASS" if st["median"] < target else "FAIL"
        rows.append([
            layout, kind, str(st["n"]), f"{st['route']}/{st['no route']}/{st['conflict']}",
            f"{st['median']:.3f}", f"{st['p90']:.3f}", f"{st['max']:.3f}", f"{target:g}", verdict,
        ])
    return rows


def synthetic_kinds(copies: int) -> dict[str, list[Pair]]:
    """Same kinds, source in copy 0, target in copies 0, middle and last."""
    targets = sorted({0, copies // 2, copies - 1})
    return {
        kind: [(prefixed(0, s), prefixed(c, t)) for c in targets for s, t in pairs]
        for kind, pairs in pair_kinds().items()
    }


def print_table(rows: list[list[str]]) -> None:
    head = ["layout", "pairs", "n", "ok/none/conflict", "median ms", "p90 ms", "max ms",
            "target ms", "result"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, ["-" * w for w in widths], *rows]:
        sys.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timings per request (median kept)")
    parser.add_argument("--copies", type=int, default=10, help="copies in the synthetic layout")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    base = load_bench(ROOT / "hardware_configs" / "hiu_2023")
    small = TubingGraph.from_config(base)
    start = time.perf_counter()
    large = TubingGraph.from_config(chained_copies(base, args.copies))
    build_ms = (time.perf_counter() - start) * 1e3
    sys.stdout.write(
        f"hiu_2023: {small.graph.number_of_nodes()} nodes, {len(small.valves)} valves; "
        f"synthetic x{args.copies}: {large.graph.number_of_nodes()} nodes, {len(large.valves)} "
        f"valves (built and compiled in {build_ms:.0f} ms)\n\n"
    )
    rows = rows_for("hiu_2023", small, pair_kinds(), args.repeat)
    rows += rows_for("synthetic x10", large, synthetic_kinds(args.copies), args.repeat)
    print_table(rows)
    return 0 if all(r[-1] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
