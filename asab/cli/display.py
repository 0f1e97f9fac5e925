"""Rich displays for ``asab run``: a live progress line and the closing summary table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from asab.runner import RunSummary


class RunDisplay:
    """Progress bar over jobs; the description shows job, step and bench (simulated) time."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, disable=quiet, transient=False,
        )
        self.task = None
        self.bench_total = 0.0
        self._last = (0, 0.0)

    def __enter__(self) -> "RunDisplay":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, index: int, total: int, job_id: str, step: str, bench_seconds: float) -> None:
        if self.task is None:
            self.task = self.progress.add_task("starting", total=total)
        if index != self._last[0]:
            self.bench_total += self._last[1]
        self._last = (index, bench_seconds)
        t = self.bench_total + bench_seconds
        done = index - 1 + (step in ("succeeded", "rejected", "failed"))
        self.progress.update(self.task, completed=done, description=(
            f"{job_id} {step:<10} bench time {int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{int(t % 60):02d}"))
        if step in ("succeeded", "rejected", "failed") and not self.quiet:
            colour = {"succeeded": "green", "rejected": "yellow", "failed": "red"}[step]
            self.progress.console.print(f"  {job_id}: [{colour}]{step}[/]")


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def _composition(d: dict[str, float] | None, order: list[str]) -> str:
    if not d:
        return "—"
    return "/".join(f"{d.get(k, 0.0):.3f}" for k in order)


def print_summary(console: Console, summary: RunSummary) -> None:
    """The closing table: one row per job, then the reasons and the per-sample costs."""
    if not console.is_terminal:
        console = Console(width=max(console.width, 140), file=console.file)
    order: list[str] = []
    for r in summary.rows:
        order += [k for k in (r["requested"] or {}) if k not in order]
    table = Table(title=f"run {summary.run_dir}")
    for col in ("job", "status", f"requested {'/'.join(order)}", "achieved", "distance",
                "ρ / g cm⁻³ (valid)", "η / mPa s (valid)", "bench min", "stock mL"):
        table.add_column(col)
    for r in summary.rows:
        colour = {"succeeded": "green", "rejected": "yellow", "failed": "red"}[r["status"]]
        table.add_row(
            r["job"], f"[{colour}]{r['status']}[/]", _composition(r["requested"], order),
            _composition(r["achieved"], order) if r["achieved"] or not r["closest"]
            else f"closest {_composition(r['closest'], order)}",
            _fmt(r["distance"], ".1e"),
            _fmt(r["density"], ".5f") + (f" ({r['density_valid']})" if r["density_valid"] else ""),
            _fmt(r["viscosity"], ".3f") + (f" ({r['viscosity_valid']})" if r["viscosity_valid"] else ""),
            _fmt(r["bench_minutes"], ".1f"), _fmt(r["stock_drawn"], ".2f"),
        )
    console.print(table)
    for r in summary.rows:
        if r["reason"]:
            console.print(f"[yellow]{r['job']}[/]: {r['reason']}")
    console.print(
        f"{summary.succeeded} succeeded, {summary.rejected} rejected, {summary.failed} failed; "
        f"bench minutes per sample {_fmt(summary.bench_minutes_per_sample, '.1f')}, "
        f"stock drawn per sample {_fmt(summary.stock_per_sample, '.2f')} mL; "
        f"records in {summary.run_dir}/records")
