"""Loaders of ``chemicals.csv`` and of the ASAB ``stockSolutions.csv``.

Both files are semicolon-separated (see :mod:`asab.config.csvio`); problem rows are physical
line numbers (header = line 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from asab.config.csvio import CsvRow, CsvTable, parse_number, read_table
from asab.config.models import Chemical, ComponentMass, StockSolution
from asab.config.problems import validation_reasons
from asab.errors import ConfigError, Problem

INCHIKEY = re.compile(r"^[A-Z]{14}-[A-Z]{10}-[A-Z]$")
"""Standard InChIKey shape: 14-letter skeleton hash, 8+1+1 letters, protonation flag
(InChI Technical Manual, IUPAC/InChI Trust)."""

# chemicals.csv column → Chemical field; the unit is part of the column name.
_CHEMICAL_TEXT = {"name": "name", "InChIKey": "inchikey", "SMILES": "smiles"}
_CHEMICAL_OPTIONAL_TEXT = {"notes": "notes", "source": "source"}
_CHEMICAL_NUMBERS = {
    "molar_mass_g_per_mol": "molar_mass",
    "density_g_per_cm3": "density",
    "density_temperature_K": "density_temperature",
    "dynamic_viscosity_mPa_s": "viscosity",
    "viscosity_temperature_K": "viscosity_temperature",
}
_CHEMICAL_REQUIRED = ("name", "InChIKey", "SMILES", "molar_mass_g_per_mol")

# stockSolutions.csv: column → (StockSolution field, required, must be > 0). Units: g, g/cm³, K.
_STOCK_NUMBERS = {
    "mass_total": ("total_mass", True, True),
    "mass_total_uncertainty": ("total_mass_uncertainty", False, False),
    "density": ("density", True, True),
    "density_uncertainty": ("density_uncertainty", False, False),
    "density_temperature": ("density_temperature", False, True),
}
_STOCK_TEXT = {
    "name": "name", "ID": "uuid", "reservoir": "reservoir", "pump": "pump", "batch": "batch",
    "manufacturer": "manufacturer", "manufacturing_date": "manufacturing_date",
    "references": "references",
}
_STOCK_REQUIRED = ("name", "reservoir", "pump", "mass_total", "density")
_UNCERTAINTY = "_uncertainty"


# ------------------------------------------------------------------------------- chemicals
def load_chemicals(csv_path: str | Path) -> tuple[Chemical, ...]:
    """Load ``chemicals.csv``.

    Columns: ``name;InChIKey;SMILES;molar_mass_g_per_mol`` (required) and optionally
    ``density_g_per_cm3;density_temperature_K;dynamic_viscosity_mPa_s;viscosity_temperature_K;
    notes;source`` (empty cell = unknown).

    Returns:
        The chemicals in file order.

    Raises:
        ConfigError: every problem found (unreadable file, missing column, bad number,
            malformed InChIKey, duplicate name or InChIKey).
    """
    chemicals, problems = read_chemicals(Path(csv_path))
    if problems:
        raise ConfigError(problems)
    return chemicals


def read_chemicals(path: Path) -> tuple[tuple[Chemical, ...], list[Problem]]:
    """Like :func:`load_chemicals`, but returns ``(valid chemicals, problems)``."""
    try:
        table = read_table(path)
        table.require(_CHEMICAL_REQUIRED)
    except ConfigError as exc:
        return (), exc.problems
    problems: list[Problem] = []
    chemicals: list[tuple[int, Chemical]] = []
    for row in table.rows:
        chemical = _parse_chemical(table, row, problems)
        if chemical is not None:
            chemicals.append((row.line, chemical))
    problems.extend(_duplicate_chemicals(table.file, chemicals))
    return tuple(c for _, c in chemicals), problems


def _parse_chemical(table: CsvTable, row: CsvRow, problems: list[Problem]) -> Chemical | None:
    values: dict[str, object] = {}
    reasons: list[str] = []
    for column, name in (_CHEMICAL_TEXT | _CHEMICAL_OPTIONAL_TEXT).items():
        index = table.column(column)
        if index is not None:
            values[name] = row.cell(index)
    for column, name in _CHEMICAL_NUMBERS.items():
        index = table.column(column)
        text = row.cell(index) if index is not None else ""
        if text or column in _CHEMICAL_REQUIRED:
            try:
                values[name] = parse_number(text, column, positive=True)
            except ValueError as exc:
                reasons.append(str(exc))
    if not INCHIKEY.match(str(values.get("inchikey", ""))):
        reasons.append(f"InChIKey {values.get('inchikey')!r} is not a standard InChIKey")
    return _build(Chemical, "chemical", values, reasons, table.file, row.line, problems)


def _duplicate_chemicals(file: str, chemicals: list[tuple[int, Chemical]]) -> list[Problem]:
    """Names (case-insensitive, as :meth:`BenchConfig.chemical` looks them up) and InChIKeys
    must be unique."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, chemical in chemicals:
        for key in (chemical.name.lower(), chemical.inchikey):
            if key in seen:
                reason = f"chemical {chemical.name!r}: {key!r} already used on line {seen[key]}"
                problems.append(Problem(file, line, reason))
            else:
                seen[key] = line
    return problems


# ---------------------------------------------------------------------------------- stocks
@dataclass(frozen=True)
class StockTable:
    """Result of :func:`read_stocks`: stocks, problems and the line of each stock by name."""

    stocks: tuple[StockSolution, ...]
    problems: list[Problem] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)


def load_stocks(
    csv_path: str | Path, chemicals: Iterable[Chemical]
) -> tuple[tuple[StockSolution, ...], list[Problem]]:
    """Load the ASAB ``stockSolutions.csv``.

    Columns: ``name;ID;reservoir;pump;mass_total;mass_total_uncertainty;density;
    density_uncertainty;density_temperature``, then a pair ``<InChIKey>;<InChIKey>_uncertainty``
    per component (masses in g), then ``batch;manufacturer;manufacturing_date;references``.
    Masses g, density g/cm³ at ``density_temperature`` K. Columns are found by header name.

    Args:
        csv_path: the file.
        chemicals: the configured chemicals; every component column must be one's InChIKey.

    Returns:
        ``(stocks, problems)``: the valid stocks and every problem found (unreadable file,
        missing column, bad number, unknown InChIKey, duplicate name, component masses that
        exceed the total mass by more than the stated uncertainties).
    """
    result = read_stocks(Path(csv_path), chemicals)
    return result.stocks, result.problems


def read_stocks(path: Path, chemicals: Iterable[Chemical]) -> StockTable:
    """Like :func:`load_stocks`, also returning the line of each stock (for later checks)."""
    try:
        table = read_table(path)
        table.require(_STOCK_REQUIRED)
    except ConfigError as exc:
        return StockTable((), exc.problems)
    problems: list[Problem] = []
    components = _component_columns(table, chemicals, problems)
    stocks: list[StockSolution] = []
    lines: dict[str, int] = {}
    for row in table.rows:
        stock = _parse_stock(table, row, components, problems)
        if stock is None:
            continue
        if stock.name in lines:
            reason = f"stock {stock.name!r} listed twice (lines {lines[stock.name]} and {row.line})"
            problems.append(Problem(table.file, row.line, reason))
            continue
        lines[stock.name] = row.line
        stocks.append(stock)
    return StockTable(tuple(stocks), problems, lines)


def _component_columns(
    table: CsvTable, chemicals: Iterable[Chemical], problems: list[Problem]
) -> dict[str, int | None]:
    """InChIKey → index of its uncertainty column (or None); checks the keys (line 1)."""
    by_key = {c.inchikey: c for c in chemicals}
    by_name = {c.name.lower(): c for c in by_key.values()}
    known = set(_STOCK_NUMBERS) | set(_STOCK_TEXT)
    keys = [h for h in table.header if h not in known and not h.endswith(_UNCERTAINTY)]
    for header in table.header:
        if header.endswith(_UNCERTAINTY) and header not in known:
            if header[: -len(_UNCERTAINTY)] not in keys:
                problems.append(Problem(table.file, 1, f"column {header!r} has no mass column"))
    for key in keys:
        if key not in by_key:
            hint = by_name.get(key.lower())
            extra = f" (use the InChIKey of {hint.name}: {hint.inchikey})" if hint else ""
            reason = f"component column {key!r} is not the InChIKey of a known chemical{extra}"
            problems.append(Problem(table.file, 1, reason))
    return {key: table.column(key + _UNCERTAINTY) for key in keys}


def _parse_stock(
    table: CsvTable, row: CsvRow, components: Mapping[str, int | None],
    problems: list[Problem],
) -> StockSolution | None:
    values: dict[str, object] = {}
    reasons: list[str] = []
    for column, name in _STOCK_TEXT.items():
        index = table.column(column)
        if index is not None:
            values[name] = row.cell(index)
    for column, (name, required, positive) in _STOCK_NUMBERS.items():
        index = table.column(column)
        text = row.cell(index) if index is not None else ""
        if text or required:
            try:
                values[name] = parse_number(text, column, positive=positive)
            except ValueError as exc:
                reasons.append(str(exc))
    values["components"] = _parse_components(table, row, components, reasons)
    if not reasons:
        reasons.extend(_mass_balance(values))
    return _build(StockSolution, "stock", values, reasons, table.file, row.line, problems)


def _parse_components(
    table: CsvTable, row: CsvRow, components: Mapping[str, int | None], reasons: list[str]
) -> dict[str, ComponentMass]:
    out: dict[str, ComponentMass] = {}
    for key, u_index in components.items():
        try:
            mass = parse_number(row.cell(table.header.index(key)), key)
            u_text = row.cell(u_index) if u_index is not None else ""
            uncertainty = parse_number(u_text, key + _UNCERTAINTY) if u_text else 0.0
        except ValueError as exc:
            reasons.append(str(exc))
            continue
        try:
            out[key] = ComponentMass(mass=mass, uncertainty=uncertainty)
        except ValidationError as exc:
            reasons += [f"{key}: {r}" for r in validation_reasons(exc)]
    return out


def _mass_balance(values: Mapping[str, object]) -> list[str]:
    """The component masses may not exceed the total mass by more than the linear sum of
    all stated standard uncertainties (a deliberately lenient, worst-case bound)."""
    components: dict[str, ComponentMass] = values["components"]  # type: ignore[assignment]
    total = float(values["total_mass"])  # type: ignore[arg-type]
    summed = sum(c.mass for c in components.values())
    tolerance = float(values.get("total_mass_uncertainty", 0.0))  # type: ignore[arg-type]
    tolerance += sum(c.uncertainty for c in components.values())
    if summed - total > tolerance:
        return [
            f"component masses add up to {summed:.6g} g, more than the total mass {total:.6g} g "
            f"(beyond the stated uncertainties, {tolerance:.3g} g)"
        ]
    return []


def _build(model: type, what: str, values: dict, reasons: list[str], file: str, line: int,
           problems: list[Problem]):
    """Make ``model(**values)`` when no reason was found so far; otherwise (or when pydantic
    objects) record every reason as a problem of ``file`` at ``line`` and return ``None``."""
    if not reasons:
        try:
            return model(**values)
        except ValidationError as exc:
            reasons.extend(validation_reasons(exc))
    label = values.get("name") or "?"
    problems.extend(Problem(file, line, f"{what} {label!r}: {r}") for r in reasons)
    return None
