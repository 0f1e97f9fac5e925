"""``asab results``: one table of every measured sample; ``asab export``: a run as an RO-Crate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from asab.cli.app import ConfigOpt, JsonOpt, app, console, emit_json, err_console, fail


@app.command()
def results(folders: Annotated[list[Path], typer.Argument(
                help="run folders (asab run --out) and/or the tenant folder (asab tenant --out)",
                metavar="RUN_OR_STATE_DIR...")],
            csv_file: Annotated[Optional[Path], typer.Option(
                "--csv", help="write the table as CSV (units in the header) to this file")] = None,
            parquet: Annotated[Optional[Path], typer.Option(
                "--parquet", help="write the table as Parquet (needs pyarrow: "
                "pip install 'asab-lab[results]')")] = None,
            plots: Annotated[Optional[Path], typer.Option(
                "--plots", help="write density/viscosity against composition and the ternary "
                "diagram (PNG and SVG) into this folder")] = None,
            config: ConfigOpt = None,
            as_json: JsonOpt = False) -> None:
    """One results table: every job of the runs (and tenant folder) given, one row each.

    Columns: request and job id, times, requested / planned / predicted / weighed / closest
    mole fractions by chemical name and InChIKey, density and viscosity mean, SD, n valid / n
    and each repetition, temperature (K), status and reason, bench and software version;
    units in the headers. Failed and rejected jobs are rows too, their values empty. Without
    --csv/--parquet/--json: a table on the terminal. --config: the bench whose stocks draw the
    makeable region of --plots (default: the bench the first folder names).
    Exit 1: a folder is missing or holds no records, or a record is unreadable.

    Example: asab results runs/demo --csv results.csv
    """
    from asab.errors import AsabError
    from asab.results.table import (
        ResultsError,
        collect,
        to_json,
        write_csv,
        write_parquet,
    )

    try:
        table = collect(folders)
    except ResultsError as exc:
        fail(str(exc))
    written: list[str] = []
    notes: list[str] = list(table.skipped)
    try:
        if csv_file is not None:
            written.append(str(write_csv(table, csv_file)))
        if parquet is not None:
            written.append(str(write_parquet(table, parquet)))
        if plots is not None:
            from asab.results.plots import write_plots

            cfg = None
            if config is not None:
                from asab.cli.app import load

                cfg = load(config)
            report = write_plots(table, plots, config=cfg)
            written += [str(p) for p in report.files]
            notes += report.notes
    except ResultsError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {exc.filename or ''}: {exc.strerror or exc}")
    except AsabError as exc:
        fail(str(exc))
    if as_json:
        emit_json({**to_json(table), "written": written, "notes": notes})
        return
    if csv_file is None and parquet is None:
        from rich.console import Console

        wide = Console(width=max(console.width, 120), file=console.file)  # like asab run's
        wide.print(_terminal_table(table))
        for r in table.rows:
            if r.reason:
                console.print(f"{r.job_id}: {r.reason}", markup=False, highlight=False,
                              soft_wrap=True)
    console.print(f"{len(table.rows)} job(s) from {len(folders)} folder(s): "
                  f"{sum(r.status == 'succeeded' for r in table.rows)} measured, "
                  f"{sum(r.status == 'rejected' for r in table.rows)} rejected, "
                  f"{sum(r.status == 'failed' for r in table.rows)} failed",
                  markup=False, highlight=False)
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
    for note in notes:
        err_console.print(f"note: {escape(note)}", soft_wrap=True)


def _fmt(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _terminal_table(table) -> Table:
    """The essentials of each row for a terminal (the full table: --csv/--parquet/--json)."""
    from asab.results.plots import achieved

    names = list(table.chemicals)
    out = Table(title=f"results ({'/'.join(names)} mole fractions)")
    for col in ("job", "status", "requested", "achieved", "T / K", "ρ / g cm⁻³ (SD; n)",
                "η / mPa s (SD; n)"):
        out.add_column(col, justify="left" if col in ("job", "status") else "right",
                       no_wrap=True)

    def comp(c):
        return "—" if not c else "/".join(f"{c.get(n, 0.0):.3f}" for n in names)

    for r in table.rows:
        rho = ("—" if r.density_mean is None else
               f"{r.density_mean:.5f} ({_fmt(r.density_sd, 5)}; {r.density_n_valid}/{r.density_n})")
        eta = ("—" if r.viscosity_mean is None else
               f"{r.viscosity_mean:.3f} ({_fmt(r.viscosity_sd, 3)}; "
               f"{r.viscosity_n_valid}/{r.viscosity_n})")
        out.add_row(r.job_id if len(r.job_id) <= 12 else r.job_id[:8], r.status, comp(r.composition("requested")), comp(achieved(r)),
                    _fmt(r.temperature, 2), rho, eta)
    return out


@app.command()
def export(run_dir: Annotated[Path, typer.Argument(help="run folder (asab run --out)")],
           out: Annotated[Path, typer.Option("--out", "-o", help="crate folder to write "
                                             "(new or empty)")],
           author: Annotated[Optional[str], typer.Option(
               help="person responsible for the data (the crate's creator); none is claimed "
               "without it")] = None,
           config: ConfigOpt = None,
           as_json: JsonOpt = False) -> None:
    """Write a run as an RO-Crate: records, raw exports, summary.csv, plots, bench config.

    The JSON-LD (ro-crate-metadata.json) says who, what, when and where; the instruments
    (CETONI neMESYS pumps, Qmix valves, Sartorius Entris II, Anton Paar DMA 4100 M with Lovis
    2000 ME), methods, stock solutions with batch and manufacturer, the bench configuration's
    SHA-256, the software and version, licence CC-BY-4.0 for the data. --config: the bench,
    for a run whose summary.json names none. Exit 1: no such run, no records, an unreadable
    record, no bench configuration, or --out not empty.

    Example: asab export runs/demo --out runs/demo-crate
    """
    from asab.errors import AsabError
    from asab.results.export import export_run, export_summary

    try:
        crate = export_run(run_dir, out, author=author, config=config)
    except AsabError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the crate {out}: {exc}")
    summary = export_summary(crate)
    if as_json:
        emit_json(summary)
        return
    counts = ", ".join(f"{n} in {k}" for k, n in sorted(summary["files"].items()))
    console.print(f"wrote RO-Crate {crate} ({counts}); metadata {crate / 'ro-crate-metadata.json'}",
                  markup=False, highlight=False, soft_wrap=True)
