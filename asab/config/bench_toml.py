"""Reading ``bench.toml``: the part of a bench that the CSV layout does not hold.

Sections (see ``hardware_configs/hiu_2023/bench.toml`` and its README):

* ``name``, optional ``attribution``;
* ``[layout]`` — CSV file names relative to the TOML's folder: ``nodes``, ``edges``,
  ``tubing``, ``chemicals`` (required) and ``stocks`` (optional);
* ``[settings]``, ``[cetoni]``, ``[[syringes]]``, ``[[pumps]]``, ``[[valves]]``,
  ``[[instruments]]``, ``[balance]`` (+ ``[balance.serial]``), ``[densimeter]``, ``[servers]``
  (+ ``[servers.ports]``) — the fields of the models in :mod:`asab.config.models`.

Numbers are plain floats in canonical units, or quantity strings (``"14.5673 mm"``,
``"3 mL/min"``, ``"25 degC"``) for the fields listed in :data:`QUANTITY_FIELDS`, converted with
:func:`asab.units.to_canonical`. A valve gives either ``ports = N`` (outer ports
``<valve name>.1`` … ``.N`` at positions 0 … N−1, the old ASAB convention) or explicit
``positions = {node = index}``.

Attribution: the top-level key ``attribution`` if present, else the leading comment block
(every ``#`` line before the first blank or non-comment line, ``# `` removed).

TOML has no line numbers after parsing, so bench-file problems carry ``row=None`` (syntax
errors excepted) and name the field instead, e.g. ``pumps[2] ('C0.0').syringe``.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from asab.config.models import MAX_VALVE_PORTS, BenchConfig, Chemical, StockSolution, Tubing
from asab.config.csvio import MAX_TABLE_BYTES
from asab.config.problems import format_location, validation_reasons
from asab.errors import ConfigError, Problem
from asab.units import to_canonical

QUANTITY_FIELDS: dict[str, dict[str, str]] = {
    "settings": {
        "total_flow": "flow", "aspirate_flow": "flow", "gas_flow": "flow",
        "pump_timeout": "time", "poll_interval": "time", "vial_capacity": "volume",
        "solvent_volume": "volume", "waste_capacity": "volume", "reservoir_reserve": "volume",
    },
    "cetoni": {"calibration_timeout": "time"},
    "carryover": {"cell_pocket": "volume", "pocket_exchange": "volume"},
    "syringes": {"inner_diameter": "length", "stroke": "length"},
    "instruments": {"measuring_volume": "volume"},
    "balance": {"stable_timeout": "time", "readability": "mass", "capacity": "mass"},
    "balance.serial": {"timeout": "time"},
    "densimeter": {"temperature": "temperature", "result_timeout": "time"},
    "densimeter.serial": {"timeout": "time"},
}
"""Table path → field → quantity kind of :data:`asab.units.CANONICAL` (units as stated in
the field descriptions of :mod:`asab.config.models`)."""

LAYOUT_KEYS = ("nodes", "edges", "tubing", "chemicals", "stocks")
LAYOUT_REQUIRED = ("nodes", "edges", "tubing", "chemicals")
_FROM_LAYOUT = ("chemicals", "stocks", "tubing")
_ARRAYS = ("syringes", "pumps", "valves", "instruments")
_TOML_LINE = re.compile(r"at line (\d+)")


@dataclass
class BenchDocument:
    """A parsed ``bench.toml``.

    Attributes:
        path: the TOML file.
        data: keyword arguments for :class:`BenchConfig` (quantities converted, valve ports
            expanded) without ``chemicals``, ``stocks`` and ``tubing``.
        layout: layout key → resolved CSV path.
        problems: problems found so far.
        reported: field locations already reported (pydantic's errors there are dropped).
    """

    path: Path
    data: dict[str, Any]
    layout: dict[str, Path] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    reported: set[tuple[str | int, ...]] = field(default_factory=set)  # pydantic locations


def read_bench_toml(path: Path) -> BenchDocument:
    """Parse ``bench.toml`` and prepare it for :func:`build_config`.

    Raises:
        ConfigError: the file cannot be read or is not valid TOML (other problems are
            collected in the returned document).
    """
    try:
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise ConfigError([Problem(path.name, None, (
                f"larger than {MAX_TABLE_BYTES:,} bytes: not a bench description"))])
        text = path.read_text(encoding="utf-8-sig")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(path.name, None, f"cannot read {path}: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        row = int(match[1]) if match else None
        raise ConfigError([Problem(path.name, row, f"invalid TOML: {exc}")]) from exc
    doc = BenchDocument(path, data)
    if "attribution" not in data:
        data["attribution"] = leading_comment(text)
    doc.layout = _resolve_layout(data.pop("layout", None), path, doc.problems)
    for key in _FROM_LAYOUT:
        if key in data:
            doc.problems.append(Problem(path.name, None, f"{key}: give it as a [layout] file"))
            del data[key]
    _convert_quantities(doc)
    _expand_valves(data, path.name, doc.problems)
    return doc


def leading_comment(text: str) -> str:
    """The leading ``#`` comment block of a TOML text, ``# `` removed, lines joined by ``\\n``."""
    lines: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped.startswith("#"):
            if stripped or lines:
                break
            continue
        lines.append(stripped[1:].removeprefix(" ").rstrip())
    return "\n".join(lines).strip()


def ports_positions(valve: str, ports: int) -> dict[str, int]:
    """Outer ports of a rotary valve in the old ASAB convention.

    Returns:
        ``{"<valve>.1": 0, …, "<valve>.<ports>": ports − 1}``.
    """
    return {f"{valve}.{i}": i - 1 for i in range(1, ports + 1)}


def build_config(
    doc: BenchDocument,
    *,
    chemicals: tuple[Chemical, ...],
    stocks: tuple[StockSolution, ...],
    tubing: Tubing,
) -> tuple[BenchConfig | None, list[Problem]]:
    """Validate the TOML data together with the CSV-loaded parts.

    Returns:
        ``(config, [])`` or ``(None, problems)`` with one problem per pydantic error, in the
        bench file and naming the field.
    """
    try:
        config = BenchConfig(**doc.data, chemicals=chemicals, stocks=stocks, tubing=tubing)
    except ValidationError as exc:
        names = _array_names(doc.data)
        reasons = validation_reasons(exc, names=names, skip=doc.reported)
        return None, [Problem(doc.path.name, None, r) for r in reasons]
    return config, []


def build_checkable(
    doc: BenchDocument,
    *,
    chemicals: tuple[Chemical, ...],
    stocks: tuple[StockSolution, ...],
    tubing: Tubing,
) -> tuple[BenchConfig | None, set[str]]:
    """A configuration made only of the valid parts of ``doc``, for the cross-reference
    checks to run on when :func:`build_config` failed (so all problems show at once).

    Invalid array items (a pump, valve, …) are left out, invalid fields of a section fall
    back to their defaults, and an optional section that still fails is left out.

    Returns:
        ``(config or None, names)``: ``names`` are the names of the items left out and the
        ``section.field`` paths reset, so that follow-on problems about them can be dropped.
    """
    data = copy.deepcopy(doc.data)
    dropped: set[str] = set()
    for _ in range(8):
        try:
            return BenchConfig(**data, chemicals=chemicals, stocks=stocks, tubing=tubing), dropped
        except ValidationError as exc:
            if not _prune(data, exc.errors(), dropped):
                return None, dropped
    return None, dropped


def _prune(data: dict[str, Any], errors: list[Any], dropped: set[str]) -> bool:
    """Remove what each error points at; False when nothing could be removed."""
    items: dict[str, set[int]] = {}
    changed = False
    for err in errors:
        loc = err["loc"]
        if not loc or loc[0] not in data:
            continue
        head = loc[0]
        if head in _ARRAYS and len(loc) > 1 and isinstance(loc[1], int):
            items.setdefault(head, set()).add(loc[1])
        elif isinstance(data[head], dict) and len(loc) > 1 and loc[1] in data[head]:
            del data[head][loc[1]]
            dropped.add(f"{head}.{loc[1]}")
            changed = True
        elif head in ("balance", "densimeter", "cetoni", "settings", "servers",
                      "carryover"):
            del data[head]
            dropped.add(head)
            changed = True
    for head, indexes in items.items():
        for i in sorted(indexes, reverse=True):
            item = data[head].pop(i)
            dropped.add(str(item.get("name")) if isinstance(item, dict) else f"{head}[{i}]")
            changed = True
    return changed


# --------------------------------------------------------------------------------- helpers
def _resolve_layout(layout: Any, path: Path, problems: list[Problem]) -> dict[str, Path]:
    file = path.name
    if not isinstance(layout, dict):
        reason = f"a [layout] table naming the {', '.join(LAYOUT_REQUIRED)} CSV files is required"
        problems.append(Problem(file, None, reason))
        return {}
    for key in sorted(set(layout) - set(LAYOUT_KEYS)):
        reason = f"layout.{key}: unknown key (expected {', '.join(LAYOUT_KEYS)})"
        problems.append(Problem(file, None, reason))
    resolved: dict[str, Path] = {}
    for key in LAYOUT_KEYS:
        value = layout.get(key)
        if value is None:
            if key in LAYOUT_REQUIRED:
                problems.append(Problem(file, None, f"layout.{key}: missing file name"))
        elif not isinstance(value, str) or not value:
            problems.append(Problem(file, None, f"layout.{key}: {value!r} is not a file name"))
        else:
            resolved[key] = path.parent / value
    return resolved


_Loc = tuple[str | int, ...]


def _tables(data: dict[str, Any], dotted: str) -> list[tuple[_Loc, dict[str, Any]]]:
    """Every table at ``dotted`` (descending into arrays of tables), with its location."""
    current: list[tuple[_Loc, dict[str, Any]]] = [((), data)]
    for part in dotted.split("."):
        found: list[tuple[_Loc, dict[str, Any]]] = []
        for loc, table in current:
            value = table.get(part)
            if isinstance(value, dict):
                found.append(((*loc, part), value))
            elif isinstance(value, list):
                found.extend(
                    ((*loc, part, i), v) for i, v in enumerate(value) if isinstance(v, dict)
                )
        current = found
    return current


def _convert_quantities(doc: BenchDocument) -> None:
    for dotted, fields in QUANTITY_FIELDS.items():
        for loc, table in _tables(doc.data, dotted):
            for key, kind in fields.items():
                value = table.get(key)
                if not isinstance(value, str):
                    continue  # numbers are canonical already; other types: pydantic reports
                try:
                    table[key] = to_canonical(value, kind)
                except ValueError as exc:
                    where = format_location((*loc, key))
                    doc.problems.append(Problem(doc.path.name, None, f"{where}: {exc}"))
                    doc.reported.add((*loc, key))


def _expand_valves(data: dict[str, Any], file: str, problems: list[Problem]) -> None:
    for loc, valve in _tables(data, "valves"):
        label = format_location(loc)
        has_positions = "positions" in valve
        if "ports" not in valve:
            if not has_positions:
                reason = f"{label}: give `ports = N` or `positions = {{node = index}}`"
                problems.append(Problem(file, None, reason))
                valve["positions"] = {}
            continue
        ports = valve.pop("ports")
        if has_positions:
            reason = f"{label}: give either `ports` or `positions`, not both"
            problems.append(Problem(file, None, reason))
        elif (not isinstance(ports, int) or isinstance(ports, bool)
              or not 1 <= ports <= MAX_VALVE_PORTS):
            problems.append(Problem(file, None, (
                f"{label}.ports: {ports!r} is not a count of 1 … {MAX_VALVE_PORTS}")))
            valve["positions"] = {}
        elif isinstance(valve.get("name"), str):
            valve["positions"] = ports_positions(valve["name"], ports)


def _array_names(data: dict[str, Any]) -> dict[tuple[str, int], str]:
    names: dict[tuple[str, int], str] = {}
    for section in _ARRAYS:
        items = data.get(section)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    names[(section, i)] = item["name"]
    return names


_REASON_PATH = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?(?: \('[^']*'\))?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*)\s*:")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([\w.]+)\s*\]\]?")


def locate(text: str, reason: str) -> int | None:
    """Line (1-based) of ``bench.toml`` that a problem's field path points at, e.g.
    ``pumps[2] ('C0.0').syringe`` → the ``syringe =`` line of the third ``[[pumps]]`` table;
    the table's header line when the key is absent; ``None`` when there is no path."""
    match = _REASON_PATH.match(reason)
    if not match:
        return _line_of_unique_value(text, reason)
    parts = re.sub(r" \('[^']*'\)", "", match[1]).split(".")
    blocks = _blocks(text)
    for k in range(len(parts) - 1, -1, -1):
        header = ".".join(parts[:k])
        if header in blocks:
            start, end = blocks[header]
            key = re.sub(r"\[\d+\]$", "", parts[k])
            lines = text.splitlines()
            for n in range(start, end):
                if re.match(rf"^\s*{re.escape(key)}\s*=", lines[n]):
                    return n + 1
            return start if header else None
    return None


def _blocks(text: str) -> dict[str, tuple[int, int]]:
    """Table name (``settings``, ``pumps[0]``, ``balance.serial``; ``""`` for the top) →
    (header line, line after its last line), 1-based header / 0-based end for slicing."""
    found: list[tuple[str, int]] = [("", 0)]
    counts: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if not m:
            continue
        name = m[2]
        if m[1] == "[[":
            counts[name] = counts.get(name, -1) + 1
            name = f"{name}[{counts[name]}]"
        else:  # a sub-table of the latest array item: [pumps.x] after [[pumps]]
            head = name.split(".")[0]
            if head in counts:
                name = f"{head}[{counts[head]}]" + name[len(head):]
        found.append((name, n))
    total = len(text.splitlines())
    ends = [n - 1 for _, n in found[1:]] + [total]
    return {name: (start, end) for (name, start), end in zip(found, ends)}


def _line_of_unique_value(text: str, reason: str) -> int | None:
    """For reasons without a field path (cross-reference checks): the one line assigning a
    value quoted in the reason, trying the last quoted value first; ``None`` if ambiguous."""
    lines = text.splitlines()
    for value in reversed(re.findall(r"'([^']+)'", reason)):
        pattern = re.compile(rf"=\s*[\"']{re.escape(value)}[\"']")
        hits = [n for n, line in enumerate(lines, start=1) if pattern.search(line)]
        if len(hits) == 1:
            return hits[0]
    return None
