"""The plots people expect of a results table, as PNG and SVG, byte-identical for one input.

* ``density.{png,svg}``, ``viscosity.{png,svg}``: the mean of the valid repetitions against
  each component's mole fraction (weighed where the doses were weighed, else planned), one
  panel per component, error bars one sample standard deviation.
* ``ternary.{png,svg}`` (exactly three components only): the makeable region — the convex
  hull of the stock solutions in mole-fraction space (:class:`asab.formulation.StockModel`)
  — with the stocks, requested, achieved and rejected compositions (the closest makeable one
  joined to a rejected request by a dotted line). Drawn with matplotlib's own plotting on
  the ternary projection of :class:`Ternary`, zoomed to the compositions shown.

Determinism: the Agg backend, a fixed ``svg.hashsalt``, SVG metadata without a date and PNG
metadata without a timestamp (:data:`SVG_METADATA`, :data:`PNG_METADATA`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import asab
from asab.results.table import DENSITY_UNIT, VISCOSITY_UNIT, ResultTable, SampleRow

CREATOR = f"asab {asab.__version__}"
SVG_METADATA = {"Date": None, "Creator": CREATOR}
PNG_METADATA = {"Software": CREATOR}
NOTES = "notes.txt"
"""What was not drawn and why (in the plots folder, only when something was not)."""
RC = {"svg.hashsalt": "asab-results", "svg.fonttype": "path", "font.size": 9}
"""Matplotlib settings of every plot (fixed hash salt: same SVG ids every time)."""

QUANTITIES = {
    "density": ("density ρ", DENSITY_UNIT.replace("cm3", "cm³")),
    "viscosity": ("dynamic viscosity η", VISCOSITY_UNIT.replace("*", "·")),
}


@dataclass
class PlotReport:
    """Files written (in order) and notes on what was not drawn and why."""

    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def achieved(row: SampleRow) -> dict[str, float] | None:
    """The composition a measured sample had: weighed if weighed, else planned, else (a
    measurement of ``asab serve``, which has no plan) the cell's predicted content."""
    return row.composition("weighed") or row.composition("planned") or row.composition(
        "predicted")


def write_plots(table: ResultTable, out_dir: Path, config=None) -> PlotReport:
    """Write the property plots and (three components) the ternary diagram to ``out_dir``.

    Args:
        table: from :func:`asab.results.table.collect`.
        out_dir: folder (created).
        config: the bench configuration for the makeable region; default the bench the
            table's first folder names (:mod:`asab.results.provenance`); without one the
            ternary shows the compositions only.

    Raises:
        OSError: ``out_dir`` cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = PlotReport()
    with plt.rc_context(RC):
        for quantity in QUANTITIES:
            fig = property_figure(table, quantity)
            if fig is None:
                report.notes.append(f"{quantity}: no measured sample, nothing to plot")
                continue
            report.files += _save(fig, out_dir / quantity)
        names = list(table.chemicals)
        if len(names) != 3:
            report.notes.append(f"ternary diagram: needs exactly 3 components, the results "
                                f"have {len(names)} ({', '.join(names) or 'none'}); not drawn")
        else:
            if config is None:
                config = _config_of(table, report)
            report.files += _save(ternary_figure(table, config), out_dir / "ternary")
    notes = out_dir / NOTES
    if report.notes:
        notes.write_text("".join(f"{n}\n" for n in report.notes), encoding="utf-8")
        report.files.append(notes)
    elif notes.exists():
        notes.unlink()
    return report


def _save(fig, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    for path, kwargs in ((png, {"dpi": 150, "metadata": PNG_METADATA}),
                         (svg, {"metadata": SVG_METADATA})):
        tmp = path.with_name(path.name + ".tmp")  # a reader never sees half a picture
        fig.savefig(tmp, format=path.suffix[1:], **kwargs)
        tmp.replace(path)
    plt.close(fig)
    return [png, svg]


def _config_of(table: ResultTable, report: PlotReport):
    from asab.errors import AsabError
    from asab.results.table import load_config

    for folder, prov in table.benches.items():
        if prov and prov.get("path"):
            try:
                return load_config(prov["path"])
            except (AsabError, OSError) as exc:
                report.notes.append(f"ternary diagram: bench {prov['path']} of {folder} does "
                                    f"not load ({exc}); makeable region not drawn")
                return None
    report.notes.append("ternary diagram: the folders name no bench configuration (runs "
                        "before issue 15); makeable region not drawn")
    return None


def property_figure(table: ResultTable, quantity: str):
    """Figure of ``quantity`` (``density`` | ``viscosity``) mean ± SD against each
    component's mole fraction, or None when no row has a value."""
    import matplotlib.pyplot as plt

    rows = [r for r in table.rows if getattr(r, f"{quantity}_mean") is not None and achieved(r)]
    if not rows:
        return None
    label, unit = QUANTITIES[quantity]
    names = list(table.chemicals)
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows + 0.4),
                             sharey=True, squeeze=False, layout="constrained")
    flat = [ax for line in axes for ax in line]
    for ax in flat[len(names):]:
        ax.set_visible(False)
    means = [getattr(r, f"{quantity}_mean") for r in rows]
    sds = [getattr(r, f"{quantity}_sd") or 0.0 for r in rows]
    for ax, name in zip(flat, names):
        xs = [achieved(r).get(name, 0.0) for r in rows]
        ax.errorbar(xs, means, yerr=sds, fmt="o", ms=4, capsize=3, color="tab:blue",
                    ecolor="0.3", elinewidth=0.8,
                    label=f"mean ± 1 SD of the valid repetitions ({len(rows)} samples)")
        ax.set_xlabel(f"mole fraction x({name}) / mol mol⁻¹")
        ax.grid(True, lw=0.3, alpha=0.5)
    for line in axes:
        line[0].set_ylabel(f"{label} / {unit}")
    axes[0][0].legend(loc="best", fontsize=7)
    fig.suptitle(f"{label} against composition{_temperature_note(rows)}")
    return fig


def _temperature_note(rows: list[SampleRow]) -> str:
    temps = [r.temperature for r in rows if r.temperature is not None]
    if not temps:
        return ""
    lo, hi = min(temps), max(temps)
    if hi - lo <= 0.1:
        return f" at {(lo + hi) / 2:.2f} K"
    return f" at {lo:.2f}–{hi:.2f} K"


def ternary_figure(table: ResultTable, config=None):
    """The ternary diagram of the table's three components (top, left, right corner in the
    table's chemical order), zoomed to the smallest sub-triangle holding every point drawn
    (:class:`Ternary`); the makeable region from ``config``'s stocks when given."""
    import matplotlib.pyplot as plt

    names = list(table.chemicals)

    def point(comp: dict[str, float]) -> tuple[float, float, float]:
        return tuple(float(comp.get(n, 0.0)) for n in names)

    stocks = _stock_points(config, names) if config is not None else []
    groups = {
        "requested": [point(r.composition("requested")) for r in table.rows
                      if r.status != "rejected" and r.composition("requested")],
        "achieved": [point(achieved(r)) for r in table.rows
                     if r.status == "succeeded" and achieved(r)],
        "failed": [point(r.composition("requested")) for r in table.rows
                   if r.status == "failed" and r.composition("requested")],
        "rejected": [point(r.composition("requested")) for r in table.rows
                     if r.status == "rejected" and r.composition("requested")],
    }
    closest = [(point(r.composition("requested")), point(r.composition("closest")))
               for r in table.rows if r.status == "rejected" and r.composition("closest")
               and r.composition("requested")]
    everything = [p for _, p in stocks] + [p for pts in groups.values() for p in pts]
    everything += [p for pair in closest for p in pair]
    tern = Ternary.around(everything)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9)
    tern.frame(ax, names)
    if stocks:
        hull = _hull(stocks)
        ax.fill(*tern.xy(hull), facecolor="tab:blue", alpha=0.15, edgecolor="tab:blue", lw=1,
                label=f"makeable (hull of {len(stocks)} stocks)", zorder=2)
        ax.scatter(*tern.xy([p for _, p in stocks]), marker="s", s=22, color="k", zorder=4,
                   label="stock solutions")
    style = {
        "requested": dict(marker="o", s=46, facecolors="none", edgecolors="tab:green", lw=1.2),
        "achieved": dict(marker=".", s=40, color="tab:blue"),
        "failed": dict(marker="^", s=36, color="tab:orange"),
        "rejected": dict(marker="x", s=40, color="tab:red"),
    }
    for kind, pts in groups.items():
        if pts:
            ax.scatter(*tern.xy(pts), label=f"{kind} ({len(pts)})", zorder=5, **style[kind])
    for i, pair in enumerate(closest):
        ax.plot(*tern.xy(list(pair)), ls=":", color="tab:red", lw=0.9, zorder=4,
                label="rejected → closest makeable" if i == 0 else None)
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.set_title(f"{'/'.join(names)} mole fractions: makeable region and compositions",
                 pad=14)
    return fig


class Ternary:
    """A ternary frame zoomed to the sub-triangle ``p_i ≥ mins[i]`` (side ``1 − Σ mins``).

    Point ``p`` (mole fractions of the top, left and right component) → normalised
    ``u = (p − mins) / side`` → plane ``x = u_right + u_top / 2``, ``y = u_top·√3/2``.
    """

    SQ3 = 3 ** 0.5 / 2

    def __init__(self, mins: tuple[float, float, float]) -> None:
        self.mins = mins
        self.side = 1.0 - sum(mins)

    @classmethod
    def around(cls, points, margin: float = 0.05, step: float = 0.05) -> Ternary:
        """The smallest frame with mins on a ``step`` grid holding ``points`` with
        ``margin`` (the whole triangle without points)."""
        import math

        if not points:
            return cls((0.0, 0.0, 0.0))
        mins = [max(0.0, math.floor((min(p[i] for p in points) - margin) / step) * step)
                for i in range(3)]
        while sum(mins) > 0.8:  # keep a readable triangle
            mins = [max(0.0, m - step) for m in mins]
        return cls(tuple(round(m, 10) for m in mins))

    def xy(self, points) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for p in points:
            u = [(p[i] - self.mins[i]) / self.side for i in range(3)]
            xs.append(u[2] + u[0] / 2)
            ys.append(u[0] * self.SQ3)
        return xs, ys

    def frame(self, ax, names: list[str]) -> None:
        """Edges, grid lines with their values and the axis labels (with units)."""
        import math

        ax.set_aspect("equal")
        ax.axis("off")
        ax.plot([0, 1, 0.5, 0], [0, 0, self.SQ3, 0], color="k", lw=1, zorder=3)
        step = 0.05 if self.side <= 0.5 else 0.1
        d = 0.025
        for i in range(3):
            lo = self.mins[i]
            k = math.floor(lo / step + 1e-9) + 1
            while True:
                v = round(k * step, 10)
                if v >= lo + self.side - 1e-9:
                    break
                u = (v - lo) / self.side
                # endpoints of p_i = v (normalised): top component horizontal, etc.
                a, b = {0: ((u, 1 - u, 0), (u, 0, 1 - u)),
                        1: ((1 - u, u, 0), (0, u, 1 - u)),
                        2: ((0, 1 - u, u), (1 - u, 0, u))}[i]
                (x0, x1), (y0, y1) = self._norm_xy([a, b])
                ax.plot([x0, x1], [y0, y1], color="0.8", lw=0.5, zorder=1)
                # value at the designated edge: top → right edge, left → left, right → bottom
                ex, ey = (x1, y1) if i == 0 else (x0, y0)
                off, rot, ha = {0: ((d * 0.87, d * 0.5), 0, "left"),
                                1: ((-d * 0.87, d * 0.5), 0, "right"),
                                2: ((0, -d * 1.2), 0, "center")}[i]
                ax.text(ex + off[0], ey + off[1], f"{v:g}", fontsize=7, ha=ha,
                        va="center" if i != 2 else "top", rotation=rot)
                k += 1
        unit = " / mol mol⁻¹"
        ax.text(0.75 + 0.13 * 0.87, self.SQ3 / 2 + 0.13 * 0.5, f"x({names[0]}){unit}",
                rotation=-60, ha="center", va="center")
        ax.text(0.25 - 0.13 * 0.87, self.SQ3 / 2 + 0.13 * 0.5, f"x({names[1]}){unit}",
                rotation=60, ha="center", va="center")
        ax.text(0.5, -0.11, f"x({names[2]}){unit}", ha="center", va="center")
        ax.set_xlim(-0.16, 1.16)
        ax.set_ylim(-0.15, self.SQ3 + 0.04)

    def _norm_xy(self, us) -> tuple[list[float], list[float]]:
        return [u[2] + u[0] / 2 for u in us], [u[0] * self.SQ3 for u in us]


def _stock_points(config, names: list[str]) -> list[tuple[str, tuple[float, ...]]]:
    """(stock name, mole fractions in ``names`` order) per stock of ``config``."""
    from asab.formulation import StockModel

    model = StockModel.from_config(config)
    name_of = {c.inchikey: c.name for c in config.chemicals}
    comps = [name_of.get(k, k) for k in model.components]
    if sorted(comps) != sorted(names):
        return []
    out = []
    for j, stock in enumerate(model.names):
        by_name = {comps[i]: float(model.fractions[i, j]) for i in range(len(comps))}
        out.append((stock, tuple(by_name[n] for n in names)))
    return out


def _hull(stocks: list[tuple[str, tuple[float, ...]]]) -> list[tuple[float, ...]]:
    """The stocks' convex hull as a closed polygon of (t, l, r) points (a segment when the
    stocks are collinear)."""
    import numpy as np
    from scipy.spatial import ConvexHull, QhullError

    pts = np.array([p for _, p in stocks])
    xy = np.column_stack([pts[:, 2] + pts[:, 0] / 2, pts[:, 0] * np.sqrt(3) / 2])
    try:
        order = ConvexHull(xy).vertices
    except (QhullError, ValueError):
        order = np.lexsort((xy[:, 1], xy[:, 0]))[[0, -1]]
    return [tuple(pts[i]) for i in order]


def _zoom(ax, points: list[tuple[float, float, float]], margin: float = 0.05) -> None:
    """Limit the ternary axes to the smallest triangle (with ``margin``) holding ``points``."""
    if not points:
        return
    mins = [max(0.0, min(p[i] for p in points) - margin) for i in range(3)]
    if sum(mins) >= 0.9:  # keep a sensible triangle
        mins = [m * 0.9 / sum(mins) for m in mins]
    t0, l0, r0 = mins
    ax.set_ternary_lim(t0, 1 - l0 - r0, l0, 1 - t0 - r0, r0, 1 - t0 - l0)
