"""A Gantt chart of a run: one lane per pump, valve, instrument cell and the balance, one bar
per step that held it, coloured by job (``asab run --gantt FILE``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from asab.actions.job import JobRecord


def _lane_order(name: str) -> tuple:
    """Pumps, then valves, cells, the balance; numbers inside names in numeric order."""
    kinds = ("pump:", "valve:", "cell:", "balance")
    kind = next(i for i, k in enumerate(kinds) if name.startswith(k))
    return kind, [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def write_gantt(records: Sequence[JobRecord], path: Path, title: str = "") -> Path:
    """Draw ``records``' step times (bench minutes from the first step) into ``path`` (PNG or
    SVG by its suffix).

    Raises:
        ValueError: no step ran, or the suffix is neither .png nor .svg.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"--gantt {path}: the file must end in .png or .svg")
    spans = [(r, s) for r in records for s in r.step_times]
    if not spans:
        raise ValueError("no step ran: nothing to draw")
    t0 = min(s.start for _, s in spans)
    lanes = sorted({lane for _, s in spans for lane in s.lanes}, key=_lane_order)
    row = {lane: i for i, lane in enumerate(lanes)}
    jobs = [r.job_id for r in records if r.step_times]
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(14, 0.32 * len(lanes) + 1.8))
    for rec, s in spans:
        colour = colours(jobs.index(rec.job_id) % 10)
        width = max((s.end - s.start) / 60, 0.05)
        for lane in s.lanes:
            ax.broken_barh([((s.start - t0) / 60, width)], (row[lane] - 0.4, 0.8),
                           facecolors=colour, edgecolor="none")
    ax.set_yticks(range(len(lanes)), [lane.split(":")[-1] for lane in lanes])
    ax.invert_yaxis()
    ax.set_xlabel("bench time / min")
    ax.set_title(title or "steps per resource, coloured by job")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(i % 10)) for i in range(len(jobs))]
    ax.legend(handles, jobs, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
