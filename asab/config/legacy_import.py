"""Import a bench folder of the original ASAB project into asab's layout (``bench.toml``).

The original project (MonikaVo/ASAB_Helge-Stein-Group, ``src/ASAB/hardware/``) describes a
bench with the three CSV tables asab reads as they are (:mod:`asab.config.legacy_csv`) plus
two Python dict literals: ``syringes.txt`` (syringe type → inner diameter, piston stroke and
minimum volume) and ``valvePositionDict.txt`` (valve → {outer-port node → position index}).
Both are parsed as data with :func:`ast.literal_eval` (which evaluates no code), never
executed; an optional ``stockSolutions.csv`` (and ``chemicals.csv``) are copied.

What the files do not say is not invented. :func:`import_legacy` writes only what follows
from them, and says so for each value it had to guess (a note with the file and line it came
from). Everything else — which syringe each pump holds, the instruments' inlet and outlet
nodes, the densimeter, the balance, the cleaning and gas pumps, the vendor device names —
is left out; ``bench.toml`` ends with a commented template for each such part, and
``asab check-config`` lists each as a problem naming the key to fill
(:mod:`asab.tubing.operability`). Commands that do not need the missing parts (``asab
route``, ``asab draw``) work on the imported folder at once.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from asab.config.benches import bundled_bench
from asab.config.checks import channel_neighbours, valve_hubs
from asab.config.csvio import read_table
from asab.config.legacy_csv import load_legacy_layout
from asab.config.models import Tubing
from asab.errors import ConfigError, Problem
from asab.names import did_you_mean

SYRINGES_FILE = "syringes.txt"
VALVES_FILE = "valvePositionDict.txt"
LAYOUT_FILES = ("nodes.csv", "edges.csv", "tubing.csv")
MAX_LITERAL_BYTES = 1_000_000
"""A dict-literal file larger than this is refused (the 2022 files are under 2 kB)."""
MAX_NUMBER = 1e6
"""Largest syringe dimension (mm) or volume (mL) accepted from ``syringes.txt``."""


@dataclass(frozen=True)
class ImportNote:
    """A value the importer had to guess or a decision it took, and where it came from."""

    file: str
    line: int | None
    text: str

    def __str__(self) -> str:
        where = self.file + (f", line {self.line}" if self.line is not None else "")
        return f"{where}: {self.text}"


@dataclass
class ImportResult:
    """What :func:`import_legacy` wrote.

    Attributes:
        out: the new bench folder.
        files: the files written, relative to ``out``.
        notes: every guess or decision, with its source.
        gaps: what the source does not say (the ``bench.toml`` key to fill for each).
    """

    out: Path
    files: list[str] = field(default_factory=list)
    notes: list[ImportNote] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)


def import_legacy(src: Path, out: Path, *, first_wins: bool = False) -> ImportResult:
    """Write a bench folder with a ``bench.toml`` from an original-ASAB layout folder.

    Args:
        src: folder with ``nodes.csv``, ``edges.csv``, ``tubing.csv``,
            ``valvePositionDict.txt`` and optionally ``syringes.txt``,
            ``stockSolutions.csv``, ``chemicals.csv``.
        out: the new bench folder (must not exist, or be empty).
        first_wins: accept edge labels defined twice (the first row wins; the later rows are
            left out of the written ``edges.csv``, each named in a note).

    Returns:
        What was written and guessed.

    Raises:
        ConfigError: a missing or unreadable source file, a layout problem (e.g. duplicate
            labels without ``first_wins``), a dict literal that is not data of the expected
            shape, or ``out`` not empty. Nothing is written then.
    """
    src, out = Path(src), Path(out)
    _require_sources(src)
    tubing, problems = load_legacy_layout(src, first_wins=first_wins)
    if problems:
        raise ConfigError(problems)
    valves_raw = read_literal(src / VALVES_FILE)
    syringes_raw = read_literal(src / SYRINGES_FILE) if (src / SYRINGES_FILE).is_file() else None
    result = ImportResult(out)
    data = _bench_data(src, tubing, valves_raw, syringes_raw, result)
    _prepare_out(out)
    _write_files(src, out, data, first_wins, result)
    return result


# ------------------------------------------------------------------------------ reading
def _require_sources(src: Path) -> None:
    missing = [f for f in (*LAYOUT_FILES, VALVES_FILE) if not (src / f).is_file()]
    if missing:
        raise ConfigError([Problem(f, None, f"not found in {src}: an original-ASAB layout "
                                   f"folder holds {', '.join((*LAYOUT_FILES, VALVES_FILE))}")
                           for f in missing])


def read_literal(path: Path) -> Any:
    """Parse a file holding one Python literal (dicts, lists, strings, numbers) as data.

    Raises:
        ConfigError: unreadable, larger than :data:`MAX_LITERAL_BYTES`, or not a literal
            (anything that would need code to run: names, calls, operators).
    """
    try:
        if path.stat().st_size > MAX_LITERAL_BYTES:
            raise ConfigError([Problem(path.name, None, (
                f"larger than {MAX_LITERAL_BYTES} bytes: not a bench description"))])
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(path.name, None, f"cannot read {path}: {exc}")]) from None
    try:
        return ast.literal_eval(text.strip())
    except SyntaxError as exc:
        raise ConfigError([Problem(path.name, exc.lineno, (
            f"not a Python literal: {exc.msg}"))]) from None
    except (ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise ConfigError([Problem(path.name, None, (
            "not plain data (only dicts, lists, strings and numbers are read, nothing is "
            f"evaluated): {type(exc).__name__}"))]) from None


def _line_of(text: str, name: str) -> int | None:
    """Line of the first dict key ``name`` in ``text``, quoted either way."""
    hits = [at for q in ("'", '"') if (at := text.find(f"{q}{name}{q}")) >= 0]
    return text.count("\n", 0, min(hits)) + 1 if hits else None


# ------------------------------------------------------------------------- bench data
def _bench_data(src: Path, tubing: Tubing, valves_raw: Any, syringes_raw: Any,
                result: ImportResult) -> dict[str, Any]:
    nodes = _node_lines(src / "nodes.csv")
    data: dict[str, Any] = {"name": _bench_name(src, result)}
    data["layout"] = {"nodes": "nodes.csv", "edges": "edges.csv", "tubing": "tubing.csv",
                      "chemicals": "chemicals.csv"}
    if (src / "stockSolutions.csv").is_file():
        data["layout"]["stocks"] = "stockSolutions.csv"
    else:
        result.gaps.append("stock solutions: add stockSolutions.csv and [layout] stocks")
    data["settings"] = _settings(nodes, result)
    syringes = _syringes(src / SYRINGES_FILE, syringes_raw, result)
    if syringes:
        data["syringes"] = syringes
    data["valves"] = _valves(src / VALVES_FILE, valves_raw, tubing, result)
    _gaps(nodes, syringes, result)
    return data


def _node_lines(path: Path) -> dict[str, int]:
    table = read_table(path)
    col = table.require(("node",))["node"]
    return {row.cell(col): row.line for row in table.rows if row.cell(col)}


def _bench_name(src: Path, result: ImportResult) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", src.resolve().name) or "imported"
    result.notes.append(ImportNote("bench.toml", None, f"name = {name!r} (the source folder's name)"))
    return name


def _settings(nodes: Mapping[str, int], result: ImportResult) -> dict[str, Any]:
    """Settings that follow from node names (each a note); the rest keep their defaults."""
    settings: dict[str, Any] = {}
    guesses = (
        ("waste_nodes", r"waste\w*", True, "nodes named waste*"),
        ("gas_nodes", r"ambient|pressurizedGas|\w*[Gg]as\w*", True, "gas sources by name"),
        ("vial_nodes", r"vial_?\d+", True, "nodes named vial_N"),
        ("solvent_node", r"Solvent\d*", False, "the first node named Solvent*"),
        ("mixer_outlet", r"M\d+\.0", False, "the mixer's outlet node M<n>.0"),
    )
    for key, pattern, many, why in guesses:
        found = sorted((n for n in nodes if re.fullmatch(pattern, n)), key=_natural)
        if not found:
            continue
        value = found if many else found[0]
        settings[key] = value
        text = f"settings.{key} = {value!r} ({why})"
        if not many and len(found) > 1:
            text += f"; also present: {', '.join(found[1:])}"
        result.notes.append(ImportNote("nodes.csv", nodes[found[0]], text))
    return settings


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _syringes(path: Path, raw: Any, result: ImportResult) -> list[dict[str, Any]]:
    if raw is None:
        result.gaps.append(f"syringes: no {SYRINGES_FILE}; add [[syringes]] with name, "
                           "inner_diameter (mm), stroke (mm)")
        return []
    if not isinstance(raw, dict):
        raise ConfigError([Problem(path.name, 1, "expected a dict: syringe type → {...}")])
    text = path.read_text(encoding="utf-8-sig")
    return [_syringe(path.name, text, str(name), entry, result) for name, entry in raw.items()]


def _syringe(file: str, text: str, name: str, entry: Any, result: ImportResult) -> dict[str, Any]:
    line = _line_of(text, name)
    keys = ("inner_dia_mm", "piston_stroke_mm", "minimum_volume_mL")
    if not isinstance(entry, dict) or any(not _number(entry.get(k)) for k in keys):
        raise ConfigError([Problem(file, line, (
            f"syringe {name!r}: expected {{{', '.join(repr(k) + ': <number>' for k in keys)}}} "
            f"with finite numbers in (0, {MAX_NUMBER:g}]"))])
    diameter, stroke, minimum = (float(entry[k]) for k in keys)
    volume = math.pi * (diameter / 2) ** 2 * stroke / 1000.0  # mm³ → mL
    fraction = min(minimum / volume, 0.99)
    result.notes.append(ImportNote(file, line, (
        f"syringe {name!r}: min_fill_fraction = {fraction:.4g} (minimum_volume_mL {minimum:g} "
        f"of the {volume:.4g} mL from inner diameter and stroke)")))
    return {"name": name, "inner_diameter": diameter, "stroke": stroke,
            "min_fill_fraction": round(fraction, 6)}


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 < value <= MAX_NUMBER)


def _valves(path: Path, raw: Any, tubing: Tubing, result: ImportResult) -> list[dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ConfigError([Problem(path.name, 1, "expected a dict: valve → {port node: position}")])
    text = path.read_text(encoding="utf-8-sig")
    neighbours = channel_neighbours(tubing)
    nodes = {n.name for n in tubing.nodes}
    valves = [v for name, positions in raw.items()
              if (v := _valve(path.name, text, str(name), positions, neighbours, nodes, result))]
    commons = {v["common"] for v in valves}
    for hub, ports in valve_hubs(tubing).items():  # each also a check-config problem
        if hub not in commons:
            result.gaps.append(
                f"[[valves]] for {hub.rpartition('.')[0]}: node {hub} is joined by fixed edges "
                f"to {', '.join(ports)} like a valve's common port, but {path.name} has no "
                "valve for it; until it has one, routes may pass two of its ports at once")
    return valves


def _valve(file: str, text: str, name: str, positions: Any, neighbours: Mapping[str, set[str]],
           nodes: set[str], result: ImportResult) -> dict[str, Any] | None:
    """The valve entry, or ``None`` (and a gap) when its common port is not clear."""
    line = _line_of(text, name)
    if (not isinstance(positions, dict) or not positions
            or not all(isinstance(k, str) and type(v) is int and 0 <= v < 1000
                       for k, v in positions.items())):
        raise ConfigError([Problem(file, line, (
            f"valve {name!r}: expected {{port node: position index (0-based int)}}"))])
    unknown = [p for p in positions if p not in nodes]
    if unknown:
        raise ConfigError([Problem(file, line, (
            f"valve {name!r}: port {p!r} is not a node of nodes.csv{did_you_mean(p, nodes)}"))
            for p in unknown])
    if len(set(positions.values())) != len(positions):
        raise ConfigError([Problem(file, line, (
            f"valve {name!r}: two ports share one position index ({positions})"))])
    ports = set(positions)
    common = sorted(n for n, near in neighbours.items() if ports <= near and n not in ports)
    if len(common) != 1:
        found = ", ".join(common) or "none"
        result.gaps.append(
            f"[[valves]] {name}: common port not clear from edges.csv (the node joined by "
            f"fixed edges to every port {', '.join(sorted(ports))}; found: {found}); add the "
            f"valve with common = \"<node>\" and its positions from {file} line {line}")
        return None
    kind = "rotary" if len(ports) > 2 else "pump_valve"
    result.notes.append(ImportNote(file, line, (
        f"valve {name!r}: common = {common[0]!r} (the node joined to all its ports by fixed "
        f"edges), kind = {kind!r} ({len(ports)} ports), device name unknown")))
    return {"name": name, "kind": kind, "common": common[0],
            "positions": dict(sorted(positions.items(), key=lambda kv: kv[1]))}


def _gaps(nodes: Mapping[str, int], syringes: list[dict[str, Any]], result: ImportResult) -> None:
    pumps = sorted((n for n in nodes if re.fullmatch(r"[A-Z]0\.0", n)), key=_natural)
    types = ", ".join(repr(s["name"]) for s in syringes) or "see [[syringes]]"
    result.gaps += [
        f"[[pumps]]: name, node, syringe ({types}) and device for each syringe pump"
        + (f"; the layout has pump nodes {', '.join(pumps)}" if pumps else ""),
        "[[instruments]]: name, kind, inlet and outlet nodes and measuring_volume of each cell",
        "[densimeter]: instrument, interface (lims or rs232) and its folders or serial line",
        "[balance] and [balance.serial]: the vessel on the pan and the serial settings",
        "settings.solvent_pump: the pump for cleaning solvent (and settings.gas_pump if gas "
        "is pushed by another pump)",
        "device names (pumps[].device, valves[].device) as in the Qmix configuration, "
        "for --hardware",
    ]


# ------------------------------------------------------------------------------ writing
def _prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError([Problem(str(out), None, (
            "the output folder exists and is not empty; choose a new --out"))])
    out.mkdir(parents=True, exist_ok=True)


def _write_files(src: Path, out: Path, data: dict[str, Any], first_wins: bool,
                 result: ImportResult) -> None:
    for name in ("nodes.csv", "tubing.csv", "stockSolutions.csv"):
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
            result.files.append(name)
    _write_edges(src / "edges.csv", out / "edges.csv", first_wins, result)
    _write_chemicals(src, out, result)
    for readme in ("README.md", "README.txt", "LICENSE"):
        if (src / readme).is_file():
            shutil.copyfile(src / readme, out / f"SOURCE_{readme}")
            result.files.append(f"SOURCE_{readme}")
    (out / "bench.toml").write_text(_bench_toml(src, data, result), encoding="utf-8")
    result.files.append("bench.toml")


def _write_edges(src: Path, dest: Path, first_wins: bool, result: ImportResult) -> None:
    """Copy edges.csv; with ``first_wins`` leave out the later rows of a duplicated label."""
    drop = _later_duplicates(src) if first_wins else {}
    lines = src.read_bytes().splitlines(keepends=True)
    kept = [raw for number, raw in enumerate(lines, start=1) if number not in drop]
    dest.write_bytes(b"".join(kept))
    result.files.append(dest.name)
    for number, (label, first, same) in sorted(drop.items()):
        how = "the same tube" if same else "a DIFFERENT tube (other properties)"
        result.notes.append(ImportNote(src.name, number, (
            f"left out: edge label {label!r} defined again as {how}; the row on line {first} "
            "is kept (--first-wins)")))


def _later_duplicates(path: Path) -> dict[int, tuple[str, int, bool]]:
    """Physical line → (label, line of its first row, same cells after the label?)."""
    table = read_table(path)
    col = table.require(("edge",))["edge"]
    first: dict[str, tuple[int, tuple[str, ...]]] = {}
    drop: dict[int, tuple[str, int, bool]] = {}
    for row in table.rows:
        label = row.cell(col)
        cells = tuple(c for i, c in enumerate(row.fields) if i != col)
        if label in first:
            drop[row.line] = (label, first[label][0], first[label][1] == cells)
        else:
            first[label] = (row.line, cells)
    return drop


def _write_chemicals(src: Path, out: Path, result: ImportResult) -> None:
    if (src / "chemicals.csv").is_file():
        shutil.copyfile(src / "chemicals.csv", out / "chemicals.csv")
    else:
        shutil.copyfile(bundled_bench() / "chemicals.csv", out / "chemicals.csv")
        result.notes.append(ImportNote("chemicals.csv", None, (
            "copied from asab's bundled table of chemical facts (the source has none; "
            "sources of every row are in the file)")))
    result.files.append("chemicals.csv")


def _bench_toml(src: Path, data: dict[str, Any], result: ImportResult) -> str:
    today = dt.date.today().isoformat()
    header = [
        f"# Imported from {src.resolve()} by asab import-legacy on {today}.",
        "# The CSV tables are the source's (edges.csv less any duplicate rows left out, see",
        "# the import notes); SOURCE_* files carry the source's own attribution, if it had one.",
        "# What the source does not say is not invented: fill the commented templates at the",
        "# end, then run `asab check-config` on this folder until it reports no problem.",
        "",
    ]
    body = tomli_w.dumps(data)
    tail = ["", "# ---- to fill in (asab check-config lists each as a problem until it is) ----"]
    tail += [f"# - {gap}" for gap in result.gaps]
    tail += _templates()
    return "\n".join(header) + body + "\n".join(tail) + "\n"


def _templates() -> list[str]:
    return [
        "#",
        "# [[pumps]]",
        '# name = "A0.0"',
        '# node = "A0.0"',
        '# syringe = "10_mL"',
        '# device = "neMESYS_Low_Pressure_1_Pump"',
        "#",
        "# [[instruments]]",
        '# name = "densiVisco"',
        '# kind = "density_viscosity"',
        '# inlet = "<node where liquid enters the cell>"',
        '# outlet = "<node where it leaves>"',
        "# measuring_volume = 1.5",
        "#",
        "# [densimeter]",
        '# instrument = "densiVisco"',
        '# interface = "lims"',
        '# lims_input_dir = "C:/AntonPaar/LIMS/in"',
        '# lims_output_dir = "C:/AntonPaar/LIMS/out"',
        "#",
        "# [balance]",
        '# vessel = "<node on the pan>"',
        "# [balance.serial]",
        '# url = "/dev/ttyUSB0"',
    ]
