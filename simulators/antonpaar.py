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

Values: density and viscosity from :mod:`simulators.physics` at the method temperature plus
seeded Gaussian noise; the viscosity is read back from simulated rolling times
η = K·(ρ_ball − ρ)·t. Parameters: ``simulators/data/anton_paar_dma4100m.toml``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from asab.config.models import Chemical
from simulators import physics
from simulators.liquid import Liquid

log = logging.getLogger(__name__)

KELVIN = 273.15
"""0 °C in K (exact, SI)."""

COLUMNS = (
    "Sample Name", "Method", "Date/Time", "Results::Measurement Level", "Results::Repetition",
    "Results::Density", "Results::Density Condition", "Results::Density Temperature",
    "Results::Lovis Dyn. Viscosity", "Results::Lovis Condition", "Results::Lovis Temperature",
    "Results::Lovis Time FW", "Results::Lovis Time BW",
)
"""Export columns; checks add ``Check Type`` after ``Method``."""


class ListenerClock(Protocol):
    """A simulated clock that calls ``listener(now, dt)`` as time advances."""

    def now(self) -> float: ...

    def add_listener(self, listener: Callable[[float, float], None]) -> None: ...

    def remove_listener(self, listener: Callable[[float, float], None]) -> None: ...


@dataclass(frozen=True)
class MethodSpec:
    """An instrument method: temperature (K), repetitions, duration (s), with Lovis or not."""

    name: str
    temperature: float
    repetitions: int
    duration: float
    viscosity: bool = True


@dataclass(frozen=True)
class DMA4100Params:
    """Instrument parameters (see ``anton_paar_dma4100m.toml`` for meaning and sources)."""

    methods: Mapping[str, MethodSpec]
    density_noise: float
    temperature_noise: float
    rolling_time_noise: float
    fw_bw_tolerance: float
    max_gas_fraction: float
    min_liquid_volume: float
    conditions: Mapping[str, str]
    epoch: datetime
    partial_write_gap: float


def load_params(path: str | Path | None = None) -> DMA4100Params:
    """Read instrument parameters (default: packaged ``data/anton_paar_dma4100m.toml``).

    Raises:
        OSError, KeyError, ValueError: unreadable file or missing/malformed entries.
    """
    if path is None:
        text = resources.files("simulators").joinpath("data/anton_paar_dma4100m.toml").read_text("utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    d = tomllib.loads(text)
    methods = {
        name: MethodSpec(name, float(m["temperature"]), int(m["repetitions"]), float(m["duration"]),
                         bool(m.get("viscosity", True)))
        for name, m in d["methods"].items()
    }
    export = d["export"]
    return DMA4100Params(
        methods=methods,
        density_noise=float(d["noise"]["density"]),
        temperature_noise=float(d["noise"]["temperature"]),
        rolling_time_noise=float(d["noise"]["rolling_time"]),
        fw_bw_tolerance=float(d["lovis"]["fw_bw_tolerance"]),
        max_gas_fraction=float(d["filling"]["max_gas_fraction"]),
        min_liquid_volume=float(d["filling"]["min_liquid_volume"]),
        conditions={k: v for k, v in export.items() if isinstance(v, str) and k != "epoch"},
        epoch=datetime.fromisoformat(export["epoch"]),
        partial_write_gap=float(export["partial_write_gap"]),
    )


@dataclass
class DMA4100Faults:
    """Fault knobs, changeable at any time.

    Attributes:
        force_fw_bw: every repetition's rolling times differ beyond the tolerance.
        extra_delay: s added before the export is written (a late instrument).
        half_written: write the export in two steps, ``partial_write_gap`` s apart, directly
            under its final name (the first part ends inside the last row).
        no_export: consume jobs but never export.
    """

    force_fw_bw: bool = False
    extra_delay: float = 0.0
    half_written: bool = False
    no_export: bool = False


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


@dataclass
class _Rep:
    density: float | None
    density_condition: str
    temperature: float
    viscosity: float | None = None
    lovis_condition: str = ""
    time_fw: float | None = None
    time_bw: float | None = None


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
    """

    def __init__(
        self, cell: Callable[[], Liquid], chemicals: Mapping[str, Chemical], clock: ListenerClock,
        lims_input_dir: str | Path, lims_output_dir: str | Path, params: DMA4100Params | None = None,
        seed: int = 0, model: physics.ElectrolyteModel | None = None,
    ) -> None:
        self.cell = cell
        self.chemicals = chemicals
        self.clock = clock
        self.input_dir = Path(lims_input_dir)
        self.output_dir = Path(lims_output_dir)
        self.params = params or load_params()
        self.model = model or physics.default_model()
        self.faults = DMA4100Faults()
        self._rng = np.random.default_rng(seed)
        self._busy_until = float("-inf")
        self._writes: list[_Write] = []
        self.input_dir.mkdir(parents=True, exist_ok=True)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        clock.add_listener(self.tick)

    def close(self) -> None:
        """Stop watching (unregister from the clock)."""
        self.clock.remove_listener(self.tick)

    @property
    def busy(self) -> bool:
        """True while a measurement is running."""
        return self.clock.now() < self._busy_until

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
        if method is None:
            self._reject(job.sample, f"invalid method {job.method!r}", now)
            return
        log.info("LIMS job %s: %s %s (%s)", job_file.name, job.kind, job.sample, method.name)
        self._busy_until = now + method.duration
        reps = self._measure(self.cell().copy(), method)
        if not self.faults.no_export:
            text = self._render(job, method, reps, now)
            self._schedule(self.output_dir / f"{job.sample}_{job.method}_{job.kind}.csv", text,
                           now + method.duration + self.faults.extra_delay)

    def _reject(self, sample: str, reason: str, now: float) -> None:
        log.warning("rejecting LIMS job for %s: %s", sample, reason)
        self._writes.append(_Write(now, self.output_dir / f"{sample}_error.txt", f"{reason}\r\n"))

    def _schedule(self, path: Path, text: str, due: float) -> None:
        if not self.faults.half_written:
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

    # ----------------------------------------------------------------- physics + noise
    def _filling_ok(self, content: Liquid) -> bool:
        total = content.total_volume
        if content.volume < self.params.min_liquid_volume or total <= 0:
            return False
        return content.gas / total <= self.params.max_gas_fraction

    def _measure(self, content: Liquid, method: MethodSpec) -> list[_Rep]:
        cond = self.params.conditions
        n, temp = method.repetitions, method.temperature
        if not self._filling_ok(content):
            bad = cond["filling_error"]
            return [_Rep(None, bad, temp, None, bad) for _ in range(n)]
        try:
            rho = physics.density(content.moles, temp, self.chemicals, self.model)
            eta = None
            if method.viscosity:
                eta = physics.viscosity(content.moles, temp, self.chemicals, self.model)
        except (ValueError, KeyError) as exc:
            log.warning("physics model failed for the cell content: %s", exc)
            return [_Rep(None, cond["model_error"], temp, None, cond["model_error"]) for _ in range(n)]
        return [self._repetition(rho, eta, temp) for _ in range(n)]

    def _repetition(self, rho: float, eta: float | None, temp: float) -> _Rep:
        p, cond = self.params, self.params.conditions
        measured = rho + self._rng.normal(0.0, p.density_noise)
        t_cell = temp + self._rng.normal(0.0, p.temperature_noise)
        rep = _Rep(measured, cond["valid"], t_cell, None, cond["not_measured"])
        if eta is None:
            return rep
        t = physics.rolling_time(eta, rho, self.model)
        fw, bw = t * (1.0 + self._rng.normal(0.0, p.rolling_time_noise, size=2))
        if self.faults.force_fw_bw:
            bw = fw * (1.0 + 3.0 * p.fw_bw_tolerance)
        rep.time_fw, rep.time_bw = float(fw), float(bw)
        if abs(fw - bw) / (0.5 * (fw + bw)) > p.fw_bw_tolerance:
            rep.lovis_condition = cond["fw_bw_error"]
        else:
            rep.lovis_condition = cond["valid"]
            rep.viscosity = physics.rolling_viscosity(0.5 * (fw + bw), measured, self.model)
        return rep

    # ----------------------------------------------------------------- export
    def _master(self, reps: list[_Rep]) -> _Rep:
        valid = self.params.conditions["valid"]

        def condition(conds: list[str]) -> str:
            return next((c for c in conds if c != valid), valid)

        return _Rep(
            _mean([r.density for r in reps if r.density_condition == valid]),
            condition([r.density_condition for r in reps]),
            float(np.mean([r.temperature for r in reps])),
            _mean([r.viscosity for r in reps if r.lovis_condition == valid]),
            condition([r.lovis_condition for r in reps]),
            _mean([r.time_fw for r in reps]), _mean([r.time_bw for r in reps]),
        )

    def _render(self, job: LimsJob, method: MethodSpec, reps: list[_Rep], start: float) -> str:
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
