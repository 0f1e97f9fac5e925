"""One results table over the job records of runs and of the tenant's folder.

A run folder (``asab run --out``) and the tenant folder (``asab tenant --out``) both hold
``records/*.json``, one :class:`~asab.actions.job.JobRecord` per density/viscosity job (the
tenant's vial deliveries, :class:`~asab.actions.vial.FlowRecord`, measure nothing and are
left out). The serve folder (``asab serve --out``) holds one
:class:`~asab.servers.history.ServeRecord` per action job: its finished ``measure`` jobs are
rows (no request; the composition the ledger predicted in the cell), the other actions are
counted and left out. :func:`collect` turns them into :class:`SampleRow` objects, one per job: failed
and rejected jobs are rows too, with their values empty (``None``), never 0.

The columns are defined once (:data:`FIELDS`, :data:`COMPOSITIONS`) and spelled out for a
set of rows by :func:`columns`: composition columns per chemical (name and InChIKey), one
column per density/viscosity repetition up to the most any row has. Headers carry the units
of :data:`asab.actions.job.UNITS`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from asab.errors import AsabError
from asab.results.provenance import read_provenance


class ResultsError(AsabError):
    """A folder given to ``asab results`` / ``asab export`` cannot be read: missing, no
    records, or an unreadable record (the message names the file and why)."""


@dataclass(frozen=True)
class Field:
    """One fixed column: attribute of :class:`SampleRow`, header label, unit ("" if none)."""

    key: str
    unit: str = ""
    doc: str = ""

    @property
    def header(self) -> str:
        return f"{self.key} [{self.unit}]" if self.unit else self.key


DENSITY_UNIT, VISCOSITY_UNIT, X_UNIT = "g/cm3", "mPa*s", "mol/mol"
"""Units of :data:`asab.actions.job.UNITS` (dynamic viscosity; mole fractions)."""

FIELDS_HEAD: tuple[Field, ...] = (
    Field("source", doc="run or tenant folder as given"),
    Field("record", doc="record file, relative to the folder"),
    Field("request_id", doc="FINALES2 request uuid"),
    Field("job_id"),
    Field("status", doc="succeeded | failed | rejected"),
    Field("reason", doc="why it failed or was rejected"),
    Field("started", doc="wall-clock start, ISO 8601 UTC"),
    Field("finished", doc="wall-clock end, ISO 8601 UTC"),
    Field("bench", doc="bench name"),
    Field("software_version", doc="asab version that wrote the record"),
    Field("composition_source", doc="plan | weighing"),
    Field("distance", X_UNIT, "Euclidean distance requested → achieved (or closest)"),
)
FIELDS_MEASURED: tuple[Field, ...] = (
    Field("temperature_requested", "K"),
    Field("temperature", "K", "mean cell temperature of the repetitions"),
    Field("density_mean", DENSITY_UNIT, "mean of the valid repetitions"),
    Field("density_sd", DENSITY_UNIT, "sample standard deviation of the valid repetitions"),
    Field("density_n_valid"),
    Field("density_n"),
    Field("viscosity_mean", VISCOSITY_UNIT, "dynamic viscosity, mean of the valid repetitions"),
    Field("viscosity_sd", VISCOSITY_UNIT),
    Field("viscosity_n_valid"),
    Field("viscosity_n"),
    Field("density_expected", DENSITY_UNIT, "ideal mixing of the predicted cell content"),
    Field("quality_flags", doc="reasons the result is trusted less, ';'-separated"),
)
FIELDS = FIELDS_HEAD + FIELDS_MEASURED
"""The fixed columns, in order (compositions come between the two groups, repetitions
after them)."""

COMPOSITIONS: tuple[str, ...] = ("requested", "planned", "predicted", "weighed", "closest")
"""Composition columns per chemical: requested; planned (from the planned stock volumes);
predicted (in the cell, carry-over included); weighed (from weighed doses); closest
makeable (of a rejected, unmakeable request)."""

REPEATED: tuple[tuple[str, str], ...] = (("density", DENSITY_UNIT), ("viscosity", VISCOSITY_UNIT))


@dataclass
class SampleRow:
    """One job's result. Compositions: chemical name → mole fraction (mol/mol); densities
    g/cm³, viscosities mPa·s (dynamic), temperatures K; ``None`` where nothing is known."""

    source: str
    record: str
    request_id: str
    job_id: str
    status: str
    reason: str | None = None
    started: str | None = None
    finished: str | None = None
    bench: str | None = None
    software_version: str | None = None
    composition_source: str | None = None
    distance: float | None = None
    temperature_requested: float | None = None
    temperature: float | None = None
    density_mean: float | None = None
    density_sd: float | None = None
    density_n_valid: int | None = None
    density_n: int | None = None
    viscosity_mean: float | None = None
    viscosity_sd: float | None = None
    viscosity_n_valid: int | None = None
    viscosity_n: int | None = None
    density_expected: float | None = None
    quality_flags: str | None = None
    compositions: dict[str, dict[str, float]] = field(default_factory=dict)
    """kind (:data:`COMPOSITIONS`) → chemical name → mole fraction."""
    density_reps: list[float | None] = field(default_factory=list)
    viscosity_reps: list[float | None] = field(default_factory=list)
    density_reps_valid: list[bool] = field(default_factory=list)
    viscosity_reps_valid: list[bool] = field(default_factory=list)

    def composition(self, kind: str) -> dict[str, float] | None:
        return self.compositions.get(kind)


@dataclass(frozen=True)
class Column:
    """One column of a table: its header and how to get its value from a row."""

    header: str
    kind: str  # "field", "x", "rep", "valid"
    key: str
    index: int = 0
    chemical: str = ""

    def value(self, row: SampleRow) -> Any:
        if self.kind == "field":
            return getattr(row, self.key)
        if self.kind == "x":
            comp = row.compositions.get(self.key)
            # a known composition without the chemical has none of it (0); unknown: empty
            return None if comp is None else comp.get(self.chemical, 0.0)
        values = getattr(row, f"{self.key}_reps" if self.kind == "rep" else f"{self.key}_reps_valid")
        return values[self.index] if self.index < len(values) else None


@dataclass
class ResultTable:
    """Rows and the chemicals they mention (name → InChIKey, "" when unknown), in bench
    order; ``benches``: folder → bench provenance (:mod:`asab.results.provenance`) or None;
    ``skipped``: what was left out and why (e.g. vial deliveries)."""

    rows: list[SampleRow]
    chemicals: dict[str, str]
    benches: dict[str, dict | None] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[Column]:
        return columns(self.rows, self.chemicals)

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts header → value (JSON-ready: None for empty)."""
        cols = self.columns
        return [{c.header: c.value(r) for c in cols} for r in self.rows]


def x_header(kind: str, name: str, inchikey: str) -> str:
    """``x_requested EC (KMTRUDSVKNLOMY-UHFFFAOYSA-N) [mol/mol]``."""
    key = f" ({inchikey})" if inchikey else ""
    return f"x_{kind} {name}{key} [{X_UNIT}]"


def columns(rows: Sequence[SampleRow], chemicals: dict[str, str]) -> list[Column]:
    """The columns of ``rows``: :data:`FIELDS_HEAD`, a composition column per kind of
    :data:`COMPOSITIONS` and chemical, :data:`FIELDS_MEASURED`, then per quantity of
    :data:`REPEATED` one value and one validity column per repetition (as many as the row
    with the most)."""
    cols = [Column(f.header, "field", f.key) for f in FIELDS_HEAD]
    for kind in COMPOSITIONS:
        cols += [Column(x_header(kind, name, key), "x", kind, chemical=name)
                 for name, key in chemicals.items()]
    cols += [Column(f.header, "field", f.key) for f in FIELDS_MEASURED]
    for quantity, unit in REPEATED:
        n = max((len(getattr(r, f"{quantity}_reps")) for r in rows), default=0)
        for i in range(n):
            cols.append(Column(f"{quantity}_rep{i + 1} [{unit}]", "rep", quantity, i))
            cols.append(Column(f"{quantity}_rep{i + 1}_valid", "valid", quantity, i))
    return cols


# --------------------------------------------------------------------------- reading
class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SummaryView(_View):
    """The fields of :class:`asab.actions.sample.Summary` the table reads."""

    values: list[float | None]
    valid: list[bool]
    mean: float | None
    stdev: float | None
    n_valid: int


class MeasurementView(_View):
    """The fields of :class:`asab.actions.job.Measurement` the table reads."""

    temperature: float | None
    density: SummaryView
    viscosity: SummaryView


class GravimetricView(_View):
    """The fields of :class:`asab.actions.gravimetric.GravimetricRecord` the table reads
    (compositions by InChIKey)."""

    planned: dict[str, float]


class ServeJobView(_View):
    """The fields of a ``asab serve`` job (:class:`asab.servers.jobs.JobInfo`) the table
    reads."""

    id: str
    kind: str
    state: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created: str
    finished: str | None = None


class ServeRecordView(_View):
    """The fields of a :class:`asab.servers.history.ServeRecord` (one action job of
    ``asab serve``, in its ``--out`` folder) the table reads."""

    bench: str
    software_version: str
    job: ServeJobView
    composition: dict[str, float] | None = None


SERVE_STATUS = {"succeeded": "succeeded", "failed": "failed", "cancelled": "failed",
                "interrupted": "failed"}
"""A serve job's final state → the table's status (a cancelled or interrupted measurement
measured nothing usable; its reason says which)."""


class RecordView(_View):
    """The fields of a :class:`asab.actions.job.JobRecord` the table reads, with the same
    names, types and defaults (tests/test_results.py checks they agree), so reading 500
    records does not import the job machinery (≈2 s of imports)."""

    job_id: str
    request_id: str
    status: Literal["succeeded", "failed", "rejected"]
    reason: str | None = None
    software_version: str
    bench: str
    started: str
    finished: str | None = None
    requested: dict[str, float] = {}
    achieved: dict[str, float] | None = None
    distance: float | None = None
    closest: dict[str, float] | None = None
    composition_source: Literal["plan", "weighing"] = "plan"
    temperature_requested: float | None = None
    measurement: MeasurementView | None = None
    gravimetric: GravimetricView | None = None
    composition_predicted: dict[str, float] | None = None
    density_expected: float | None = None
    quality_flags: list[str] = []


def record_files(folder: Path) -> list[Path]:
    """The record files of a run or tenant folder (``records/*.json``), sorted.

    Raises:
        ResultsError: ``folder`` is missing, not a folder, or holds no records.
    """
    folder = Path(folder)
    if not folder.exists():
        raise ResultsError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ResultsError(f"{folder}: not a folder (give a run or tenant folder)")
    files = sorted((folder / "records").glob("*.json")) if (folder / "records").is_dir() else []
    if not files:
        hint = (" (a bench state folder holds the ledger, not records: give the run's --out "
                "folder)" if (folder / "ledger.json").exists() else "")
        raise ResultsError(f"{folder}: no job records (records/*.json){hint}")
    return files


def collect(folders: Iterable[Path]) -> ResultTable:
    """Read every job record of ``folders`` (run or tenant folders) into one table.

    Raises:
        ResultsError: a folder is missing or holds no records, or a record is unreadable
            (not JSON, or not a job record): the message names the file and why.
    """
    rows: list[SampleRow] = []
    chemicals: dict[str, str] = {}
    benches: dict[str, dict | None] = {}
    skipped: list[str] = []
    for folder in folders:
        folder = Path(folder)
        files = record_files(folder)
        prov = read_provenance(folder)
        benches[str(folder)] = prov
        known = bench_chemicals(prov)
        flows = 0
        actions: dict[str, int] = {}  # serve jobs that measure nothing (or still run), by kind
        for path in files:
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError) as exc:
                raise ResultsError(f"{path}: unreadable record: {exc}") from exc
            if isinstance(data, dict) and "volume_requested" in data:
                flows += 1  # a vial delivery: nothing measured
                continue
            if isinstance(data, dict) and isinstance(data.get("job"), dict):
                try:  # a job of asab serve: only its measurements are samples
                    served = ServeRecordView.model_validate(data)
                except ValidationError as exc:
                    raise ResultsError(f"{path}: not a serve job record: "
                                       f"{exc.errors()[0].get('msg')}") from exc
                if served.job.kind != "measure" or served.job.state not in SERVE_STATUS:
                    actions[served.job.kind] = actions.get(served.job.kind, 0) + 1
                    continue
                row = serve_row(served, str(folder), path.relative_to(folder).as_posix())
                rows.append(row)
                for comp in row.compositions.values():
                    for name in comp:
                        chemicals.setdefault(name, known.get(name, ""))
                continue
            try:
                rec = RecordView.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(map(str, first.get("loc", ()))) or "record"
                raise ResultsError(f"{path}: not a job record: {where}: {first.get('msg')}"
                                   f" ({exc.error_count()} problem(s))") from exc
            row = sample_row(rec, str(folder), path.relative_to(folder).as_posix(), known)
            rows.append(row)
            for comp in row.compositions.values():
                for name in comp:
                    chemicals.setdefault(name, known.get(name, ""))
        if flows:
            skipped.append(f"{folder}: {flows} vial deliver{'y' if flows == 1 else 'ies'} "
                           "(electrolyte/flow jobs measure nothing)")
        if actions:
            skipped.append(f"{folder}: " + ", ".join(
                f"{n} {kind}" for kind, n in sorted(actions.items()))
                + " serve job(s) (only finished measure jobs are samples)")
    order = {name: i for i, name in enumerate(_all_known(benches))}
    chemicals = dict(sorted(chemicals.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    for name in chemicals:
        if not chemicals[name]:
            chemicals[name] = next((bench_chemicals(p).get(name, "") for p in benches.values()
                                    if bench_chemicals(p).get(name)), "")
    return ResultTable(rows, chemicals, benches, skipped)


_CHEMICALS: dict[str, dict[str, str]] = {}


def bench_chemicals(prov: dict | None) -> dict[str, str]:
    """Chemical name → InChIKey of the bench ``prov`` names (its chemicals list), else of
    the bundled 2023 bench; {} when neither loads."""
    from asab.config.benches import bundled_bench

    try:
        path = str(prov["path"]) if prov else str(bundled_bench())
    except AsabError:
        return {}
    if path not in _CHEMICALS:
        try:
            _CHEMICALS[path] = {c.name: c.inchikey for c in load_config(path).chemicals}
        except (AsabError, OSError):
            _CHEMICALS[path] = {}
    return _CHEMICALS[path]


def load_config(path: str | Path):
    """The bench configuration at ``path`` (bench.toml or its folder).

    Raises:
        ConfigError: as :func:`asab.config.loader.load_bench`."""
    from asab.config.loader import load_bench

    return load_bench(path)


def _all_known(benches: dict[str, dict | None]) -> list[str]:
    names: list[str] = []
    for prov in benches.values():
        names += [n for n in bench_chemicals(prov) if n not in names]
    return names


def sample_row(rec: RecordView, source: str, record: str,
               inchikeys: dict[str, str]) -> SampleRow:
    """One :class:`SampleRow` of a job record (:class:`RecordView`); ``inchikeys``:
    name → InChIKey of its bench (to name the gravimetric compositions, kept by InChIKey)."""
    names = {v: k for k, v in inchikeys.items()}
    comps: dict[str, dict[str, float]] = {}
    if rec.requested:
        comps["requested"] = dict(rec.requested)
    grav = rec.gravimetric
    if rec.composition_source == "weighing" and rec.achieved:
        comps["weighed"] = dict(rec.achieved)
        if grav is not None:
            comps["planned"] = {names.get(k, k): v for k, v in grav.planned.items()}
    elif rec.achieved:
        comps["planned"] = dict(rec.achieved)
    if rec.composition_predicted:
        comps["predicted"] = dict(rec.composition_predicted)
    if rec.closest:
        comps["closest"] = dict(rec.closest)
    row = SampleRow(
        source=source, record=record, request_id=rec.request_id, job_id=rec.job_id,
        status=rec.status, reason=rec.reason, started=rec.started, finished=rec.finished,
        bench=rec.bench, software_version=rec.software_version,
        composition_source=rec.composition_source if rec.achieved else None,
        distance=rec.distance, temperature_requested=rec.temperature_requested,
        density_expected=rec.density_expected,
        quality_flags=";".join(str(f) for f in rec.quality_flags) or None,
        compositions=comps)
    m = rec.measurement
    if m is not None:
        row.temperature = m.temperature
        for quantity in ("density", "viscosity"):
            _set_summary(row, quantity, getattr(m, quantity))
    return row


def _set_summary(row: SampleRow, quantity: str, s: SummaryView) -> None:
    """``row``'s columns of ``quantity`` (density, viscosity) from its summary: mean and SD
    of the valid repetitions (None when there are none, or one for the SD), counts, values."""
    setattr(row, f"{quantity}_mean", s.mean if s.n_valid else None)
    setattr(row, f"{quantity}_sd", s.stdev if s.n_valid > 1 else None)
    setattr(row, f"{quantity}_n_valid", s.n_valid)
    setattr(row, f"{quantity}_n", len(s.values))
    setattr(row, f"{quantity}_reps", list(s.values))
    setattr(row, f"{quantity}_reps_valid", list(s.valid))


def serve_row(rec: ServeRecordView, source: str, record: str) -> SampleRow:
    """One :class:`SampleRow` of a finished ``measure`` job of ``asab serve``: no request
    (the job id stands in), the composition the ledger predicted in the cell, the values."""
    job = rec.job
    status = SERVE_STATUS[job.state]
    reason = None
    if job.error:
        reason = str(job.error.get("message") or job.error.get("type") or job.state)
    elif status != job.state:
        reason = job.state
    row = SampleRow(
        source=source, record=record, request_id="", job_id=job.id, status=status,
        reason=reason, started=job.created, finished=job.finished, bench=rec.bench,
        software_version=rec.software_version,
        compositions={"predicted": dict(rec.composition)} if rec.composition else {})
    result = job.result or {}
    if status == "succeeded" and result:
        temps = [t for r in result.get("repetitions", [])
                 for t in (r.get("density_temperature"),) if isinstance(t, (int, float))]
        row.temperature = sum(temps) / len(temps) if temps else None
        for quantity in ("density", "viscosity"):
            try:
                summary = SummaryView.model_validate(result.get(quantity) or {})
            except ValidationError:
                continue
            _set_summary(row, quantity, summary)
    return row


# --------------------------------------------------------------------------- writing
def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def write_csv(table: ResultTable, path: Path) -> Path:
    """Write ``table`` as CSV (comma-separated, UTF-8, one header row with units; empty
    cells for unknown values) to ``path``, atomically. Returns ``path``.

    Raises:
        OSError: ``path`` cannot be written."""
    path = Path(path)
    cols = table.columns
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([c.header for c in cols])
        for row in table.rows:
            writer.writerow([_cell(c.value(row)) for c in cols])
    tmp.replace(path)
    return path


def write_parquet(table: ResultTable, path: Path) -> Path:
    """Write ``table`` as Parquet (typed columns, nulls for unknown values) with pyarrow.

    Raises:
        ResultsError: pyarrow is not installed (``pip install "asab-lab[results]"``).
        OSError: ``path`` cannot be written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ResultsError("--parquet needs pyarrow, which is not installed: "
                           "pip install 'asab-lab[results]' (or pip install pyarrow)") from exc
    cols = table.columns
    data = {c.header: [c.value(r) for r in table.rows] for c in cols}
    arrays = {}
    for c in cols:
        values = data[c.header]
        kind = _arrow_type(c)
        arrays[c.header] = pa.array(values, type=kind)
    pq.write_table(pa.table(arrays), str(path))
    return Path(path)


def _arrow_type(col: Column):
    import pyarrow as pa

    if col.kind in ("x", "rep"):
        return pa.float64()
    if col.kind == "valid":
        return pa.bool_()
    if col.key.endswith(("_n", "_n_valid")):
        return pa.int64()
    floats = {"distance", "temperature_requested", "temperature", "density_mean", "density_sd",
              "viscosity_mean", "viscosity_sd", "density_expected"}
    return pa.float64() if col.key in floats else pa.string()


def to_json(table: ResultTable) -> dict[str, Any]:
    """``{"columns": [headers], "chemicals": {name: InChIKey}, "rows": [{header: value}],
    "skipped": [...]}``."""
    return {"columns": [c.header for c in table.columns], "chemicals": table.chemicals,
            "rows": table.records(), "skipped": table.skipped}
