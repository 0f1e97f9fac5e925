"""Simulated Anton Paar DMA 4100 M + Lovis 2000 ME behind the LIMS folder exchange.

Protocol (``shared/docs/device_protocols.md``, "LIMS file exchange"): a client drops
``<sample>.lims`` into the input folder, content ``#V100\\n1;<sample>;;;;<method>`` (measurement)
or ``#V200\\n1;<sample>;;;;<method>;Type;C (Check);Check Type;<check>`` (check). The simulator
polls the folder on every tick of the clock, deletes the job file it consumes, snapshots the cell
content at measurement start and, after the method's duration, writes
``<sample>_<method>_Measurement.csv`` (or ``_Check.csv``) into the output folder, atomically
(``.tmp`` then rename). Jobs are run one after the other, oldest first.

Export: ``;``-separated, a header row, one row per repetition (``Results::Measurement Level`` =
``Repetition``) and one aggregate row (``Master``: means over the valid repetitions). Density in
g/cm³ (5 decimals), temperatures in °C (3 decimals), viscosity in mPa·s (4 decimals), Lovis
rolling times in s (3 decimals), ``---`` for no value, CRLF line ends, UTF-8.

Simulator conventions (documented choices, not vendor behaviour):
    * a job the instrument cannot run (unreadable ``.lims``, unknown method) produces no export but
      ``<sample>_error.txt`` in the output folder, holding the reason; a real instrument would
      show the error on its screen, so a driver times out there;
    * gas above ``filling.max_gas_fraction`` of the cell content, or less liquid than
      ``filling.min_liquid_volume``: every condition is ``Filling error`` and every value ``---``;
    * forward/backward rolling times differing by more than ``lovis.fw_bw_tolerance`` (relative):
      Lovis condition ``FW/BW dev. too high``, viscosity ``---``.

Values come from the instrument core shared with the RS-232 front end
(:class:`simulators.antonpaar_core.DMA4100Core`): density and viscosity from
:mod:`simulators.physics` at the method temperature (a LIMS method's duration includes its
temperature equilibration) plus seeded Gaussian noise; the viscosity is read back from simulated
forward/backward rolling times. Parameters: ``simulators/data/anton_paar_dma4100m.toml``.

Fault injection (same shape on every simulator): ``inject(kind, **params)``, ``clear_faults()``;
kinds: ``fw_bw`` (``deviation``, ``count``), ``late_export`` (``delay`` s), ``half_written``,
``no_export``, ``invalid_method`` (see :meth:`DMA4100Simulator.inject`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from asab.config.models import Chemical
from simulators import physics
from simulators.antonpaar_core import (  # noqa: F401 - re-exported for existing callers
    KELVIN,
    DMA4100Core,
    DMA4100Params,
    FwBwFault,
    ListenerClock,
    MethodSpec,
    Reading,
    load_params,
)
from simulators.liquid import Liquid

log = logging.getLogger(__name__)

COLUMNS = (
    "Sample Name", "Method", "Date/Time", "Results::Measurement Level", "Results::Repetition",
    "Results::Density", "Results::Density Condition", "Results::Density Temperature",
    "Results::Lovis Dyn. Viscosity", "Results::Lovis Condition", "Results::Lovis Temperature",
    "Results::Lovis Time FW", "Results::Lovis Time BW",
)
"""Export columns; checks add ``Check Type`` after ``Method``."""


LIMS_FAULTS = ("fw_bw", "late_export", "half_written", "no_export", "invalid_method")
"""Fault kinds the LIMS front end accepts in :meth:`DMA4100Simulator.inject`."""


@dataclass(frozen=True)
class LimsJob:
    """A parsed ``.lims`` job. ``kind`` is ``Measurement`` or ``Check``."""

    sample: str
    method: str
    kind: str = "Measurement"
    check_type: str = ""


def parse_lims(text: str) -> LimsJob:
    """Parse a ``.lims`` job (simulator's own reader of the documented format).

    Raises:
        ValueError: unknown version line, missing fields, or a sample name with path characters.
    """
    lines = [ln.strip() for ln in text.lstrip("\ufeff").splitlines() if ln.strip()]
    if len(lines) < 2 or lines[0] not in ("#V100", "#V200"):
        raise ValueError("expected '#V100' or '#V200' followed by one job line")
    fields = lines[1].split(";")
    if len(fields) < 6 or not fields[1] or not fields[5]:
        raise ValueError(f"job line {lines[1]!r} lacks sample or method")
    sample, method = fields[1], fields[5]
    if any(ch in sample for ch in "/\\:") or sample in (".", ".."):
        raise ValueError(f"sample name {sample!r} is not a file name")
    if lines[0] == "#V100":
        return LimsJob(sample, method)
    if len(fields) < 10 or fields[8] != "Check Type" or not fields[9]:
        raise ValueError(f"check job line {lines[1]!r} lacks 'Check Type;<check>'")
    return LimsJob(sample, method, "Check", fields[9])


@dataclass(order=True)
class _Write:
    due: float
    path: Path = field(compare=False)
    text: str = field(compare=False)
    mode: str = field(compare=False, default="atomic")  # "atomic" | "write" | "append"


def _fmt(value: float | None, decimals: int) -> str:
    return "---" if value is None else f"{value:.{decimals}f}"


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


class DMA4100Simulator:
    """LIMS-folder simulator of the DMA 4100 M + Lovis 2000 ME (see module docstring).

    Args:
        cell: returns what is in the measuring cell now (snapshotted at measurement start).
        chemicals: InChIKey → chemical data for the physics.
        clock: simulated clock; the simulator registers its :meth:`tick` as a listener.
        lims_input_dir: folder watched for ``*.lims`` jobs (created if missing).
        lims_output_dir: folder exports are written to (created if missing).
        params: instrument parameters (default :func:`load_params`).
        seed: seed of the numpy Generator used for all noise.
        model: physics parameters (default :func:`simulators.physics.default_model`).
        core: an instrument core to share with another front end (then ``cell``,
            ``chemicals``, ``params``, ``seed`` and ``model`` are taken from it).
    """

    def __init__(
        self, cell: Callable[[], Liquid], chemicals: Mapping[str, Chemical], clock: ListenerClock,
        lims_input_dir: str | Path, lims_output_dir: str | Path, params: DMA4100Params | None = None,
        seed: int = 0, model: physics.ElectrolyteModel | None = None, core: DMA4100Core | None = None,
    ) -> None:
        self.core = core or DMA4100Core(cell, chemicals, clock, params, seed, model)
        self.clock = clock
        self.params = self.core.params
        self.input_dir = Path(lims_input_dir)
        self.output_dir = Path(lims_output_dir)
        self.faults: dict[str, dict[str, Any]] = {}
        self._busy_until = float("-inf")
        self._writes: list[_Write] = []
        self.input_dir.mkdir(parents=True, exist_ok=True)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        clock.add_listener(self.tick)

    def close(self) -> None:
        """Stop watching (unregister from the clock)."""
        self.clock.remove_listener(self.tick)
        self.core.close()

    @property
    def busy(self) -> bool:
        """True while a measurement is running."""
        return self.clock.now() < self._busy_until

    # ----------------------------------------------------------------- faults
    def inject(self, kind: str, **params: Any) -> None:
        """Inject a fault until :meth:`clear_faults` (or until ``count`` is used up).

        Kinds and parameters:
            ``fw_bw`` (``deviation=0.01``: relative extra backward rolling time, ``count=None``:
            repetitions affected, all if None): the Lovis reports ``FW/BW dev. too high``.
            ``late_export`` (``delay=200.0`` s): the export appears ``delay`` s late.
            ``half_written``: the export is written in two steps ``partial_write_gap`` s apart
            under its final name. ``no_export``: jobs are consumed, nothing is exported.
            ``invalid_method``: every job is rejected as an unknown method (``_error.txt``).

        Raises:
            ValueError: unknown kind or parameter (RS-232-only kinds included).
        """
        allowed = {"fw_bw": {"deviation", "count"}, "late_export": {"delay"}, "half_written": set(),
                   "no_export": set(), "invalid_method": set()}
        if kind not in allowed:
            raise ValueError(f"LIMS densimeter simulator: unknown fault {kind!r}; "
                             f"supported: {', '.join(LIMS_FAULTS)}")
        if set(params) - allowed[kind]:
            raise ValueError(f"fault {kind!r} takes {sorted(allowed[kind])}, got {sorted(params)}")
        if kind == "fw_bw":
            self.core.fw_bw = FwBwFault(float(params.get("deviation", 0.01)), params.get("count"))
        self.faults[kind] = dict(params)

    def clear_faults(self) -> None:
        """Remove every injected fault (also the core's ``fw_bw``)."""
        self.faults.clear()
        self.core.fw_bw = None

    def tick(self, now: float, dt: float) -> None:
        """Clock listener: write due exports, then start the next job when idle."""
        self._flush(now)
        if now >= self._busy_until:
            job_file = self._next_job_file()
            if job_file is not None:
                self._start(job_file, now)
                self._flush(now)

    # ----------------------------------------------------------------- jobs
    def _next_job_file(self) -> Path | None:
        try:
            files = [p for p in self.input_dir.glob("*.lims") if p.is_file()]
            return min(files, key=lambda p: (p.stat().st_mtime_ns, p.name)) if files else None
        except OSError:  # a file vanished while listing: try again next tick
            return None

    def _start(self, job_file: Path, now: float) -> None:
        try:
            text = job_file.read_text(encoding="utf-8", errors="replace")
            job_file.unlink()
        except OSError as exc:
            log.warning("cannot consume %s: %s", job_file, exc)
            return
        try:
            job = parse_lims(text)
        except ValueError as exc:
            self._reject(job_file.stem, str(exc), now)
            return
        method = self.params.methods.get(job.method)
        if method is None or "invalid_method" in self.faults:
            self._reject(job.sample, f"invalid method {job.method!r}", now)
            return
        log.info("LIMS job %s: %s %s (%s)", job_file.name, job.kind, job.sample, method.name)
        self._busy_until = now + method.duration
        self.core.set_point = method.temperature
        reps = self.core.measure(self.core.cell().copy(), method.temperature, method.repetitions,
                                 method.viscosity)
        if "no_export" not in self.faults:
            late = self.faults.get("late_export")
            delay = 0.0 if late is None else float(late.get("delay", 200.0))
            text = self._render(job, method, reps, now)
            self._schedule(self.output_dir / f"{job.sample}_{job.method}_{job.kind}.csv", text,
                           now + method.duration + delay)

    def _reject(self, sample: str, reason: str, now: float) -> None:
        log.warning("rejecting LIMS job for %s: %s", sample, reason)
        self._writes.append(_Write(now, self.output_dir / f"{sample}_error.txt", f"{reason}\r\n"))

    def _schedule(self, path: Path, text: str, due: float) -> None:
        if "half_written" not in self.faults:
            self._writes.append(_Write(due, path, text))
            return
        cut = len(text) - max(3, len(text.splitlines()[-1]) // 2)
        self._writes.append(_Write(due, path, text[:cut], "write"))
        self._writes.append(_Write(due + self.params.partial_write_gap, path, text[cut:], "append"))

    def _flush(self, now: float) -> None:
        due = sorted(w for w in self._writes if w.due <= now)
        self._writes = [w for w in self._writes if w.due > now]
        for w in due:
            self._write(w)

    def _write(self, w: _Write) -> None:
        data = w.text.encode("utf-8")
        if w.mode == "atomic":
            tmp = w.path.with_name(w.path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, w.path)
        else:
            with open(w.path, "wb" if w.mode == "write" else "ab") as fh:
                fh.write(data)
        log.info("exported %s (%s)", w.path.name, w.mode)

    # ----------------------------------------------------------------- export
    def _master(self, reps: list[Reading]) -> Reading:
        valid = self.params.conditions["valid"]

        def condition(conds: list[str]) -> str:
            return next((c for c in conds if c != valid), valid)

        return Reading(
            _mean([r.density for r in reps if r.density_condition == valid]),
            condition([r.density_condition for r in reps]),
            float(np.mean([r.temperature for r in reps])),
            _mean([r.viscosity for r in reps if r.lovis_condition == valid]),
            condition([r.lovis_condition for r in reps]),
            _mean([r.time_fw for r in reps]), _mean([r.time_bw for r in reps]),
        )

    def _render(self, job: LimsJob, method: MethodSpec, reps: list[Reading], start: float) -> str:
        columns = list(COLUMNS)
        if job.kind == "Check":
            columns.insert(2, "Check Type")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, delimiter=";", lineterminator="\r\n")
        writer.writeheader()
        step = method.duration / len(reps)
        levels = [("Repetition", str(i + 1), r, start + (i + 1) * step) for i, r in enumerate(reps)]
        levels.append(("Master", "", self._master(reps), start + method.duration))
        for level, number, rep, t in levels:
            stamp = self.params.epoch + timedelta(seconds=t)
            row = {
                "Sample Name": job.sample, "Method": job.method, "Check Type": job.check_type,
                "Date/Time": stamp.strftime("%Y-%m-%d %H:%M:%S"),
                "Results::Measurement Level": level, "Results::Repetition": number,
                "Results::Density": _fmt(rep.density, 5),
                "Results::Density Condition": rep.density_condition,
                "Results::Density Temperature": _fmt(rep.temperature - KELVIN, 3),
                "Results::Lovis Dyn. Viscosity": _fmt(rep.viscosity, 4),
                "Results::Lovis Condition": rep.lovis_condition,
                "Results::Lovis Temperature": _fmt(rep.temperature - KELVIN, 3),
                "Results::Lovis Time FW": _fmt(rep.time_fw, 3),
                "Results::Lovis Time BW": _fmt(rep.time_bw, 3),
            }
            writer.writerow({k: v for k, v in row.items() if k in columns})
        return buf.getvalue()
