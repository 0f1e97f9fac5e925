"""Results of runs: one table over the job records, the plots, the FAIR export.

* :mod:`asab.results.table` — :func:`collect` the records of run and tenant folders into
  :class:`SampleRow` rows; CSV, Parquet, JSON.
* :mod:`asab.results.plots` — density/viscosity against composition, the ternary diagram of
  the makeable region.
* :mod:`asab.results.export` — an RO-Crate of a run folder.
* :mod:`asab.results.provenance` — which bench configuration a run used, and its hash.

:func:`write_folder_outputs` is what ``asab run`` and the tenant call after their jobs:
``summary.csv`` and ``plots/`` in the run or tenant folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from asab.results.table import ResultsError, ResultTable, SampleRow, collect, write_csv

log = logging.getLogger(__name__)

SUMMARY_CSV = "summary.csv"
PLOTS_DIR = "plots"


def write_folder_outputs(folder: Path, config=None, *, plots: bool = True) -> list[str]:
    """Write ``summary.csv`` (and with ``plots`` the ``plots/`` folder) of a run or tenant
    folder from its records. Never raises: a problem is logged and returned as a note (the
    records are what counts, and they are written already).

    Returns:
        Notes on what was not written and why.
    """
    folder = Path(folder)
    notes: list[str] = []
    try:
        table = collect([folder])
        write_csv(table, folder / SUMMARY_CSV)
        if plots:
            from asab.results.plots import write_plots

            notes += write_plots(table, folder / PLOTS_DIR, config=config).notes
    except Exception as exc:  # noqa: BLE001 - the run's records stand; say what is missing
        log.warning("results of %s not written: %s", folder, exc)
        notes.append(f"results not written: {exc}")
    return notes


__all__ = ["PLOTS_DIR", "SUMMARY_CSV", "ResultTable", "ResultsError", "SampleRow", "collect",
           "write_csv", "write_folder_outputs"]
