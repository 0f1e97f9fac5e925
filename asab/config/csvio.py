"""Reading the semicolon-separated tables of the ASAB CSV layout.

Shared by :mod:`asab.config.legacy_csv` and :mod:`asab.config.stocks`. Parsing is done by the
standard :mod:`csv` module (delimiter ``;``, ``"`` quoting, so notes may contain ``;``); the
files may start with a UTF-8 byte-order mark, end rows with a trailing ``;`` and contain blank
lines.

Line numbers: every :class:`CsvRow` carries the *physical* line number on which its record
starts, as a text editor shows it (the header is line 1, blank lines count). Problems raised
by the loaders use this number as :attr:`asab.errors.Problem.row`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from asab.errors import ConfigError, Problem
from asab.units import ascii_float

DELIMITER = ";"
MAX_TABLE_BYTES = 5_000_000
"""A table larger than this is refused at once (the 2023 tables are under 20 kB; a bench of
thousands of tubes stays far below it)."""


@dataclass(frozen=True)
class CsvRow:
    """One non-blank record of a table.

    Attributes:
        line: physical line number where the record starts (header = line 1).
        fields: the cells, whitespace-stripped.
    """

    line: int
    fields: tuple[str, ...]

    def cell(self, index: int) -> str:
        """Return cell ``index`` or ``""`` when the row is shorter."""
        return self.fields[index] if index < len(self.fields) else ""


@dataclass(frozen=True)
class CsvTable:
    """A parsed table: file name (for problems), header cells and data rows."""

    file: str
    header: tuple[str, ...]
    rows: tuple[CsvRow, ...]

    def column(self, name: str) -> int | None:
        """Index of header cell ``name`` (exact match), or ``None`` when absent."""
        try:
            return self.header.index(name)
        except ValueError:
            return None

    def require(self, names: tuple[str, ...]) -> dict[str, int]:
        """Indexes of the required columns ``names``.

        Raises:
            ConfigError: one problem (line 1) naming every missing column.
        """
        missing = [n for n in names if n not in self.header]
        if missing:
            reason = f"missing column(s) {', '.join(missing)} in the header"
            raise ConfigError([Problem(self.file, 1, reason)])
        return {n: self.header.index(n) for n in names}


def read_table(path: Path) -> CsvTable:
    """Read a semicolon-separated table.

    Args:
        path: the CSV file.

    Returns:
        The table. Trailing empty header cells (from a trailing ``;``) are dropped; blank
        records are skipped but counted in the line numbers.

    Raises:
        ConfigError: the file cannot be read or decoded, is not valid CSV, is empty, or is
            larger than :data:`MAX_TABLE_BYTES`.
    """
    rows: list[CsvRow] = []
    header: tuple[str, ...] | None = None
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise ConfigError([Problem(path.name, None, (
                f"{size:,} bytes: larger than the {MAX_TABLE_BYTES:,} bytes a bench table "
                "may have (is this the right file?)"))])
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=DELIMITER)
            previous_end = 0
            for fields in reader:
                row = CsvRow(previous_end + 1, tuple(f.strip() for f in fields))
                previous_end = reader.line_num
                if not any(row.fields):
                    continue
                if header is None:
                    header = _strip_trailing_empty(row.fields)
                else:
                    rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError([Problem(path.name, None, f"cannot read {path}: {exc}")]) from exc
    if header is None:
        raise ConfigError([Problem(path.name, None, f"{path} is empty (no header)")])
    return CsvTable(path.name, header, tuple(rows))


def _strip_trailing_empty(cells: tuple[str, ...]) -> tuple[str, ...]:
    end = len(cells)
    while end and not cells[end - 1]:
        end -= 1
    return cells[:end]


def _finite_text(text: str) -> bool:
    """Not one of the words float() reads as non-finite (reported as such, not as text)."""
    return text.strip().lower().lstrip("+-") not in ("inf", "infinity", "nan")


def parse_number(text: str, column: str, *, positive: bool = False) -> float:
    """Parse a non-negative finite number from a cell.

    Args:
        text: the cell text (plain number in the column's canonical unit).
        column: column name, used in the error message.
        positive: require > 0 instead of >= 0.

    Raises:
        ValueError: empty, non-numeric, not finite, negative (or zero when ``positive``);
            the message names the column and the text.
    """
    if not text:
        raise ValueError(f"{column}: missing number")
    try:
        value = ascii_float(text) if _finite_text(text) else float(text)
    except ValueError:
        raise ValueError(f"{column}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{column}: {text!r} is not a finite number")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{column}: {text!r} must be {bound}")
    return value
