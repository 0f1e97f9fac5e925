"""Anton Paar DMA 4100 M densimeter + Lovis 2000 ME viscometer through the LIMS folder exchange.

Protocol (``shared/docs/device_protocols.md``, "LIMS file exchange", and the old ASAB driver):
the driver writes ``<sample>.lims`` into the folder the instrument watches, content
``#V100\\n1;<sample>;;;;<method>`` (measurement) or
``#V200\\n1;<sample>;;;;<method>;Type;C (Check);Check Type;<check>`` (check), and waits for the
export ``<sample>_<method>_Measurement.csv`` (``_Check.csv``) in the output folder: ``;``-separated,
a header row, one row per repetition and an aggregate row whose ``Results::Measurement Level`` is
``Master``. A condition other than ``valid`` marks a value invalid; ``---`` means no value.

An export is read only once complete: present and of unchanged size across two polls, ending with
a line end, and parsing into exactly the configured number of repetition rows plus one ``Master``
row. An export (or ``<sample>_error.txt``) that already existed before the job was written is
ignored until it changes. ``<sample>_error.txt`` is written by asab's simulator when it rejects a
job; a real instrument reports that on its screen instead, and the driver then times out.

This driver has not yet been checked against a real instrument: the export columns follow the old
ASAB driver; the optional units row after the header and dash variants of ``---`` are tolerated
because the old driver skipped one row and stripped non-ASCII characters.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from asab.clock import Clock, poll_until
from asab.config.models import DensimeterSettings
from asab.drivers.base import DensityViscosityResult, RepetitionResult, confirm_temperature
from asab.errors import Cause, ConfigError, DeviceError, RequestError, TransportTimeout, WaitTimeout

log = logging.getLogger(__name__)

KELVIN = 273.15
"""0 °C in K (exact, SI)."""

SAMPLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
"""Allowed sample names: they become file names on the instrument PC."""

NO_VALUE = re.compile(r"[-\u2010-\u2015\u2212]*")
"""``---`` (or empty, or a run of Unicode dashes): no value."""

LEVEL = "Results::Measurement Level"
REPETITION = "Results::Repetition"
REQUIRED = (
    LEVEL, "Results::Density", "Results::Density Condition", "Results::Density Temperature",
    "Results::Lovis Dyn. Viscosity", "Results::Lovis Condition", "Results::Lovis Temperature",
)
"""Export columns the driver needs."""


@functools.cache
def _warn_unverified() -> None:
    log.warning("asab.drivers.antonpaar has not been checked on a real DMA 4100 M / Lovis 2000 ME")


def _value(text: str) -> float | None:
    """A number of the export, ``None`` for ``---``. Raises ValueError on anything else."""
    text = text.strip()
    return None if NO_VALUE.fullmatch(text) else float(text)


def _is_units_row(row: dict[str, str]) -> bool:
    cell = row["Results::Density"].strip()
    return "/" in cell or "cm" in cell


def _repetition(row: dict[str, str], index: int) -> RepetitionResult:
    density, eta = _value(row["Results::Density"]), _value(row["Results::Lovis Dyn. Viscosity"])
    t_density = _value(row["Results::Density Temperature"])
    t_lovis = _value(row["Results::Lovis Temperature"])
    d_cond, v_cond = row["Results::Density Condition"].strip(), row["Results::Lovis Condition"].strip()
    number = row.get(REPETITION, "").strip()
    return RepetitionResult(
        repetition=int(number) if number.isdigit() and int(number) >= 1 else index,
        density=density,
        density_valid=d_cond.casefold() == "valid" and density is not None,
        density_condition=d_cond,
        density_temperature=None if t_density is None else t_density + KELVIN,
        viscosity=eta,
        viscosity_valid=v_cond.casefold() == "valid" and eta is not None,
        viscosity_condition=v_cond,
        viscosity_temperature=None if t_lovis is None else t_lovis + KELVIN,
    )


def parse_export(text: str, repetitions: int) -> list[RepetitionResult]:
    """Parse a complete LIMS export into its repetitions (the ``Master`` row is checked, not returned).

    Args:
        text: the export's text (a leading BOM is ignored).
        repetitions: number of repetition rows the method produces.

    Returns:
        One :class:`RepetitionResult` per repetition row, in file order; temperatures in K.

    Raises:
        ValueError: incomplete or malformed: no final line end, a required column missing, a row
            with the wrong number of fields, a bad number, or not exactly ``repetitions``
            repetition rows and one ``Master`` row (last).
    """
    if not text.endswith("\n"):
        raise ValueError("export does not end with a line end (still being written?)")
    rows = [r for r in csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";") if any(r)]
    if not rows:
        raise ValueError("export is empty")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValueError(f"export lacks columns {missing}")
    if any(len(r) != len(header) for r in rows[1:]):
        raise ValueError("export has a row with the wrong number of fields")
    records = [dict(zip(header, r)) for r in rows[1:]]
    if records and _is_units_row(records[0]):
        records = records[1:]
    levels = [r[LEVEL].strip() for r in records]
    if levels.count("Master") != 1 or levels[-1] != "Master" or len(levels) != repetitions + 1:
        raise ValueError(f"expected {repetitions} repetition rows and a final Master row, got {levels}")
    return [_repetition(r, i + 1) for i, r in enumerate(records[:-1])]


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


@dataclass(frozen=True)
class _Signature:
    inode: int
    mtime_ns: int
    size: int


def _signature(path: Path) -> _Signature | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _Signature(st.st_ino, st.st_mtime_ns, st.st_size)


class DMA4100LimsDriver:
    """:class:`~asab.drivers.base.DensityViscosityMeter` of a DMA 4100 M + Lovis 2000 ME (LIMS).

    Args:
        settings: folders, method, repetitions and result timeout (``name`` becomes :attr:`name`).
        clock: every wait goes through it.
        poll_interval: s between looks into the output folder.
    """

    def __init__(self, settings: DensimeterSettings, clock: Clock, poll_interval: float = 1.0) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        self.settings = settings
        self.name = settings.name
        self.clock = clock
        self.poll_interval = poll_interval
        if not (settings.lims_input_dir and settings.lims_output_dir):
            raise ConfigError(f"{settings.name}: the LIMS driver needs lims_input_dir and lims_output_dir")
        self.input_dir = Path(settings.lims_input_dir)
        self.output_dir = Path(settings.lims_output_dir)
        _warn_unverified()

    def measure(self, sample: str, timeout: float | None = None) -> DensityViscosityResult:
        """Measure what is in the cell with the configured method.

        Args:
            sample: sample name (letters, digits, ``_`` and ``-``; becomes a file name).
            timeout: s to wait for the export (default ``settings.result_timeout``).

        Returns:
            The parsed repetitions, the export's path and its text verbatim.

        Raises:
            RequestError: invalid sample name.
            TransportTimeout: no complete export within the timeout (virtual or real s).
            DeviceError: cause ``"job rejected"``: the (simulated) instrument wrote
                ``<sample>_error.txt``.
        """
        job = f"#V100\n1;{sample};;;;{self.settings.method}"
        return self._run(sample, job, "Measurement", timeout)

    def check(
        self, sample: str, check_type: str, timeout: float | None = None
    ) -> DensityViscosityResult:
        """Run an instrument check (e.g. a water or solvent check configured on the instrument).

        Same arguments, result and errors as :meth:`measure`; ``check_type`` is the check's
        name on the instrument (letters, digits, ``_``, ``-`` and spaces).
        """
        if not re.fullmatch(r"[A-Za-z0-9_\- ]{1,100}", check_type):
            raise RequestError(f"{self.name}: invalid check type {check_type!r}")
        job = f"#V200\n1;{sample};;;;{self.settings.method};Type;C (Check);Check Type;{check_type}"
        return self._run(sample, job, "Check", timeout)

    # ----------------------------------------------------------------- internals
    def _run(self, sample: str, job: str, kind: str, timeout: float | None) -> DensityViscosityResult:
        if not SAMPLE_NAME.fullmatch(sample):
            raise RequestError(
                f"{self.name}: sample name {sample!r} must be 1-100 letters, digits, '_' or '-'"
            )
        export = self.output_dir / f"{sample}_{self.settings.method}_{kind}.csv"
        error = self.output_dir / f"{sample}_error.txt"
        stale = (_signature(export), _signature(error))
        lims = self._submit(sample, job)
        limit = self.settings.result_timeout if timeout is None else timeout
        text = self._wait(export, error, lims, stale, limit)
        reps = [confirm_temperature(r, self.settings.temperature,
                                    self.settings.temperature_tolerance, self.name)
                for r in parse_export(text, self.settings.repetitions)]
        log.info("%s: %s read (%d repetitions)", self.name, export.name, len(reps))
        return DensityViscosityResult(
            sample=sample, method=self.settings.method, repetitions=reps,
            raw_file=str(export), raw_text=text,
        )

    def _submit(self, sample: str, job: str) -> Path:
        """Write the job file atomically (temporary name, then rename)."""
        lims = self.input_dir / f"{sample}.lims"
        tmp = self.input_dir / f".{sample}.lims.tmp"
        tmp.write_text(job, encoding="utf-8", newline="")
        os.replace(tmp, lims)
        log.info("%s: job %s written", self.name, lims)
        return lims

    def _wait(
        self, export: Path, error: Path, lims: Path, stale: tuple[_Signature | None, _Signature | None],
        timeout: float,
    ) -> str:
        last_size: int | None = None

        def complete_export() -> str | None:
            nonlocal last_size
            sig = _signature(export)
            if sig is not None and sig != stale[0]:
                if sig.size == last_size and (text := self._read_complete(export)) is not None:
                    return text
                last_size = sig.size
            err = _signature(error)
            if err is not None and err != stale[1]:
                reason = _decode(error.read_bytes()).strip()
                raise DeviceError(self.name, Cause.JOB_REJECTED, f"{lims.name} rejected: {reason}")
            return None

        try:
            return poll_until(self.clock, complete_export, timeout, f"export {export.name}",
                              self.poll_interval, device=self.name)
        except WaitTimeout as exc:
            message = self._timeout_message(export, lims, timeout, last_size)
            raise TransportTimeout(self.name, message) from exc

    def _read_complete(self, export: Path) -> str | None:
        try:
            text = _decode(export.read_bytes())
            parse_export(text, self.settings.repetitions)
        except (OSError, ValueError) as exc:
            log.debug("%s: %s not complete yet: %s", self.name, export.name, exc)
            return None
        return text

    def _timeout_message(self, export: Path, lims: Path, timeout: float, last_size: int | None) -> str:
        msg = f"no complete export {export.name} within {timeout:g} s"
        if last_size is not None:
            msg += " (the file is there but incomplete or malformed)"
        if lims.exists():
            lims.unlink(missing_ok=True)
            msg += "; the instrument never picked up the job, its .lims file was removed"
        return msg
