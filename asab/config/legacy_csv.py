"""Importer of the ASAB CSV tubing layout (``nodes.csv``, ``edges.csv``, ``tubing.csv``).

The format is the one of the original ASAB package and of the FINALES ASAB tenant
(shared/data/README.md):

* ``nodes.csv`` — ``node;position_node``; the position ``"(x,y)"`` is for drawing only.
* ``edges.csv`` — ``flexibility;edge;start;end;ends;length;diameter;dead_volume;restriction;
  status;`` plus an optional unnamed note column. ``flexibility`` is ``fixed`` (a channel
  inside a component, start/end are nodes), ``available`` (a tube in the drawer, start/end
  ``not_fixed``) or ``broken`` (a tube that must not be used). ``length`` mm, ``diameter`` mm
  (inner), ``dead_volume`` mL; ``restriction`` is ``directed`` (liquid flows start → end only)
  or ``undirected``. The ``ends`` and ``status`` columns are not used.
* ``tubing.csv`` — ``start;edge;end``: which drawer tube joins which two nodes in this build.
  A placed tube runs from the row's start to its end (this orientation is what ``directed``
  refers to). A drawer tube that ``tubing.csv`` does not place is simply not connected.

The connected network is every valid ``fixed`` row plus every valid placement. Problem rows
are physical line numbers (header = line 1), see :mod:`asab.config.csvio`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from asab.config.csvio import CsvRow, CsvTable, parse_number, read_table
from asab.config.problems import validation_reasons
from asab.config.models import Tubing, TubingEdge, TubingNode
from asab.errors import ConfigError, Problem

logger = logging.getLogger(__name__)

FLEXIBILITIES = ("fixed", "available", "broken")
"""Values of the ``flexibility`` column."""
RESTRICTIONS = {"directed": True, "undirected": False}
"""``restriction`` value → ``TubingEdge.directed``."""
NOT_FIXED = "not_fixed"
"""start/end placeholder of drawer tubes."""

NODE_COLUMNS = ("node",)
EDGE_COLUMNS = (
    "flexibility", "edge", "start", "end", "length", "diameter", "dead_volume", "restriction",
)
TUBING_COLUMNS = ("start", "edge", "end")
_POSITION = re.compile(r"^\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)$")


@dataclass(frozen=True)
class EdgeRow:
    """One valid row of ``edges.csv`` (lengths mm, diameter mm, dead volume mL)."""

    line: int
    label: str
    flexibility: str
    start: str
    end: str
    length: float
    inner_diameter: float
    dead_volume: float
    directed: bool
    note: str = ""

    def physical(self) -> tuple[object, ...]:
        """The properties compared for duplicate labels, in the order of ``_PHYSICAL_NAMES``
        (everything but line, label and note)."""
        return (
            self.flexibility, self.start, self.end, self.length, self.inner_diameter,
            self.dead_volume, self.directed,
        )


_PHYSICAL_NAMES = (
    "flexibility", "start", "end", "length", "diameter", "dead_volume", "restriction",
)


def load_legacy_layout(
    folder: str | Path,
    *,
    first_wins: bool = False,
    nodes: str = "nodes.csv",
    edges: str = "edges.csv",
    tubing: str = "tubing.csv",
) -> tuple[Tubing, list[Problem]]:
    """Import an ASAB CSV layout folder.

    Args:
        folder: folder holding the three files.
        first_wins: accept edge labels defined twice with different properties (the first
            row wins, a warning is logged) instead of reporting them as problems.
        nodes: file name of the node table inside ``folder``.
        edges: file name of the edge table.
        tubing: file name of the placement table.

    Returns:
        ``(tubing, problems)``: the network built from every valid row, and every problem
        found (empty when the layout is clean). Problem rows are physical line numbers.
        Harmless oddities (identical duplicate rows, a drawer tube whose start/end is not
        ``not_fixed``) are logged as warnings, not returned.
    """
    root = Path(folder)
    return read_layout(root / nodes, root / edges, root / tubing, first_wins=first_wins)


def read_layout(
    nodes_path: Path, edges_path: Path, tubing_path: Path, *, first_wins: bool = False
) -> tuple[Tubing, list[Problem]]:
    """Like :func:`load_legacy_layout` with the three file paths given one by one."""
    tables: list[CsvTable] = []
    problems: list[Problem] = []
    for path in (nodes_path, edges_path, tubing_path):
        try:
            tables.append(read_table(path))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        return Tubing(nodes=(), edges=()), problems
    try:
        return _build(*tables, first_wins=first_wins)
    except ConfigError as exc:  # a missing header column
        return Tubing(nodes=(), edges=()), exc.problems


def _build(
    nodes_table: CsvTable, edges_table: CsvTable, tubing_table: CsvTable, *, first_wins: bool
) -> tuple[Tubing, list[Problem]]:
    problems: list[Problem] = []
    nodes = _read_nodes(nodes_table, problems)
    names = {n.name for n in nodes}
    rows, labels_seen = _read_edges(edges_table, problems, first_wins=first_wins)
    _check_edge_ends(edges_table.file, nodes_table.file, rows.values(), names, problems)
    fixed = [
        _to_edge(r, r.start, r.end)
        for r in rows.values()
        if r.flexibility == "fixed" and r.start in names and r.end in names
    ]
    context = _PlacementContext(rows, labels_seen, names, nodes_table.file, edges_table.file)
    placed = _read_placements(tubing_table, context, problems)
    return Tubing(nodes=tuple(nodes), edges=tuple(fixed + placed)), problems


# ----------------------------------------------------------------------------------- nodes
def _read_nodes(table: CsvTable, problems: list[Problem]) -> list[TubingNode]:
    cols = table.require(NODE_COLUMNS)
    pos_col = table.column("position_node")
    first_line: dict[str, int] = {}
    nodes: list[TubingNode] = []
    for row in table.rows:
        name = row.cell(cols["node"])
        if not name:
            problems.append(Problem(table.file, row.line, "empty node name"))
            continue
        if name in first_line:
            reason = f"node {name!r} listed twice (lines {first_line[name]} and {row.line})"
            problems.append(Problem(table.file, row.line, reason))
            continue
        first_line[name] = row.line
        position = None
        if pos_col is not None and row.cell(pos_col):
            try:
                position = parse_position(row.cell(pos_col))
            except ValueError as exc:
                problems.append(Problem(table.file, row.line, f"node {name!r}: {exc}"))
        nodes.append(TubingNode(name=name, position=position))
    return nodes


def parse_position(text: str) -> tuple[float, float]:
    """Parse a drawing position ``"(x,y)"``.

    Raises:
        ValueError: not two finite numbers in parentheses.
    """
    match = _POSITION.match(text)
    if match:
        try:
            x, y = float(match[1]), float(match[2])
        except ValueError:
            pass
        else:
            if math.isfinite(x) and math.isfinite(y):
                return (x, y)
    raise ValueError(f"position_node {text!r} is not '(x,y)' with two numbers")


# ----------------------------------------------------------------------------------- edges
def _read_edges(
    table: CsvTable, problems: list[Problem], *, first_wins: bool
) -> tuple[dict[str, EdgeRow], set[str]]:
    """Valid rows by label (first occurrence kept) and every label seen, valid or not."""
    cols = table.require(EDGE_COLUMNS)
    note_col = table.column("note")
    cols["note"] = note_col if note_col is not None else len(table.header)
    kept: dict[str, EdgeRow] = {}
    seen: set[str] = set()
    duplicates: list[tuple[EdgeRow, EdgeRow]] = []
    for row in table.rows:
        seen.add(row.cell(cols["edge"]))
        edge = _parse_edge_row(table.file, row, cols, problems)
        if edge is None:
            continue
        if edge.label in kept:
            duplicates.append((kept[edge.label], edge))
        else:
            kept[edge.label] = edge
    _report_duplicates(table.file, duplicates, problems, first_wins=first_wins)
    return kept, seen


def _parse_edge_row(
    file: str, row: CsvRow, cols: Mapping[str, int], problems: list[Problem]
) -> EdgeRow | None:
    label = row.cell(cols["edge"])
    flexibility = row.cell(cols["flexibility"])
    restriction = row.cell(cols["restriction"])
    reasons: list[str] = []
    if not label:
        reasons.append("empty edge label")
    if flexibility not in FLEXIBILITIES:
        reasons.append(f"unknown flexibility {flexibility!r} (expected {_choices(FLEXIBILITIES)})")
    if restriction not in RESTRICTIONS:
        reasons.append(f"unknown restriction {restriction!r} (expected {_choices(RESTRICTIONS)})")
    numbers: dict[str, float] = {}
    for column, positive in (("length", False), ("diameter", True), ("dead_volume", False)):
        try:
            numbers[column] = parse_number(row.cell(cols[column]), column, positive=positive)
        except ValueError as exc:
            reasons.append(str(exc))
    if not reasons:
        reasons += _out_of_bounds(numbers)
    problems.extend(Problem(file, row.line, f"edge {label!r}: {r}") for r in reasons)
    if reasons:
        return None
    return EdgeRow(
        line=row.line, label=label, flexibility=flexibility,
        start=row.cell(cols["start"]), end=row.cell(cols["end"]),
        length=numbers["length"], inner_diameter=numbers["diameter"],
        dead_volume=numbers["dead_volume"], directed=RESTRICTIONS[restriction],
        note=row.cell(cols["note"]),
    )


def _out_of_bounds(numbers: Mapping[str, float]) -> list[str]:
    """The physical bounds of :class:`TubingEdge` (length, diameter, dead volume)."""
    try:
        TubingEdge(label="x", start="a", end="b", length=numbers["length"],
                   inner_diameter=numbers["diameter"], dead_volume=numbers["dead_volume"])
    except ValidationError as exc:
        return validation_reasons(exc)
    return []


def _report_duplicates(
    file: str,
    duplicates: list[tuple[EdgeRow, EdgeRow]],
    problems: list[Problem],
    *,
    first_wins: bool,
) -> None:
    """Every label defined twice is a problem (a label names one physical tube), unless
    ``first_wins``: then the first row is used and a warning lists them all."""
    if first_wins:
        if duplicates:
            logger.warning(
                "%s: %d edge label(s) defined twice; the first row wins (--first-wins): %s",
                file, len(duplicates), _describe(duplicates),
            )
        return
    for a, b in duplicates:
        differ = _differences(a, b)
        detail = (f"with different properties: lines {a.line} and {b.line} differ in "
                  f"{', '.join(differ)}") if differ else (
            f"with identical properties (lines {a.line} and {b.line})")
        detail += ("; a label names one tube: give one of the rows a new label, or accept "
                   "the first row with the --first-wins option")
        problems.append(Problem(file, b.line, f"edge label {a.label!r} defined twice {detail}"))


def _differences(a: EdgeRow, b: EdgeRow) -> list[str]:
    return [n for n, x, y in zip(_PHYSICAL_NAMES, a.physical(), b.physical()) if x != y]


def _describe(pairs: list[tuple[EdgeRow, EdgeRow]]) -> str:
    return ", ".join(f"{a.label} (lines {a.line} and {b.line})" for a, b in pairs)


def _choices(values: Collection[str]) -> str:
    return " or ".join(repr(v) for v in values)


def _check_edge_ends(
    file: str, nodes_file: str, rows: Collection[EdgeRow], nodes: set[str],
    problems: list[Problem],
) -> None:
    """Fixed rows must join two nodes; drawer tubes must say ``not_fixed`` at both ends (their
    ends come from ``tubing.csv``), so anything else there — e.g. the real typo ``mot_fixed``
    — is reported."""
    for row in rows:
        if row.flexibility == "fixed":
            for side, node in (("start", row.start), ("end", row.end)):
                if node not in nodes:
                    reason = f"fixed edge {row.label!r}: {side} {node!r} is not in {nodes_file}"
                    problems.append(Problem(file, row.line, reason))
        elif row.flexibility == "available":
            for side, value in (("start", row.start), ("end", row.end)):
                if value != NOT_FIXED:
                    problems.append(Problem(file, row.line, (
                        f"drawer tube {row.label!r}: unknown {side} value {value!r} (expected "
                        f"{NOT_FIXED!r}; tubing.csv places drawer tubes)")))


# ------------------------------------------------------------------------------ placements
@dataclass(frozen=True)
class _PlacementContext:
    edges: Mapping[str, EdgeRow]
    labels_seen: set[str]
    nodes: set[str]
    nodes_file: str
    edges_file: str


def _read_placements(
    table: CsvTable, ctx: _PlacementContext, problems: list[Problem]
) -> list[TubingEdge]:
    cols = table.require(TUBING_COLUMNS)
    first_line: dict[str, int] = {}
    placed: list[TubingEdge] = []
    for row in table.rows:
        start, label, end = (row.cell(cols[c]) for c in TUBING_COLUMNS)
        reasons = _placement_reasons(start, label, end, ctx)
        if label in first_line:
            reasons.append(f"tube {label!r} is placed twice (first at line {first_line[label]})")
        else:
            first_line[label] = row.line
        problems.extend(Problem(table.file, row.line, r) for r in reasons)
        if not reasons and label in ctx.edges:
            placed.append(_to_edge(ctx.edges[label], start, end))
    return placed


def _placement_reasons(start: str, label: str, end: str, ctx: _PlacementContext) -> list[str]:
    reasons = [
        f"{side} node {node!r} is not in {ctx.nodes_file}"
        for side, node in (("start", start), ("end", end))
        if node not in ctx.nodes
    ]
    if start == end:
        reasons.append(f"tube {label!r} starts and ends at the same node {start!r}")
    edge = ctx.edges.get(label)
    if edge is None:
        if label not in ctx.labels_seen:  # an invalid row is reported in edges.csv already
            reasons.append(f"edge {label!r} is not in {ctx.edges_file}")
    elif edge.flexibility == "broken":
        reasons.append(
            f"tube {label!r} is marked broken ({ctx.edges_file} line {edge.line}); "
            "it must not be used"
        )
    elif edge.flexibility == "fixed":
        reasons.append(
            f"edge {label!r} is a fixed channel ({ctx.edges_file} line {edge.line}), "
            "not a drawer tube"
        )
    return reasons


def _to_edge(row: EdgeRow, start: str, end: str) -> TubingEdge:
    return TubingEdge(
        label=row.label, start=start, end=end, length=row.length,
        inner_diameter=row.inner_diameter, dead_volume=row.dead_volume,
        directed=row.directed, fixed=row.flexibility == "fixed", note=row.note,
    )


# ---------------------------------------------------------------------- tube dead volumes
DEAD_VOLUME_RTOL = 0.05
"""A drawer tube's ``dead_volume`` may differ from its geometric volume by this fraction …"""
DEAD_VOLUME_ATOL = 0.001
"""… or by this many mL, whichever is larger, before :func:`tube_volume_warnings` warns.
(5 % covers the two-significant-digit rounding of the 2023 table, e.g. 0.02 mL written for a
0.0194 mL tube; 1 µL covers the shortest connectors.)"""


def tube_volume(length: float, inner_diameter: float) -> float:
    """Geometric volume of a tube, mL: length × π(d/2)² with length and d in mm (1 mL =
    1000 mm³)."""
    return length * math.pi * (inner_diameter / 2.0) ** 2 / 1000.0


def tube_volume_warnings(edges_path: Path) -> list[Problem]:
    """Drawer tubes whose ``dead_volume`` disagrees with their length and inner diameter.

    Only drawer tubes (``available`` rows) are checked: a ``fixed`` row is a channel inside
    a component, whose volume is not a plain tube's. A tube whose length was edited but whose
    dead volume was not is the usual cause.

    Args:
        edges_path: the ``edges.csv`` file.

    Returns:
        One problem per disagreeing row (its physical line), naming both volumes; empty when
        the file cannot be read (its problems are reported by the loader).
    """
    try:
        table = read_table(edges_path)
        cols = table.require(EDGE_COLUMNS)
    except ConfigError:
        return []
    cols["note"] = len(table.header)
    warnings: list[Problem] = []
    for line in table.rows:
        row = _parse_edge_row(table.file, line, cols, [])
        if row is None or row.flexibility != "available":
            continue
        geometric = tube_volume(row.length, row.inner_diameter)
        if abs(row.dead_volume - geometric) > max(DEAD_VOLUME_RTOL * geometric, DEAD_VOLUME_ATOL):
            warnings.append(Problem(table.file, row.line, (
                f"tube {row.label!r}: dead_volume {row.dead_volume:g} mL disagrees with "
                f"length × π(d/2)² = {row.length:g} mm × π × ({row.inner_diameter:g} mm / 2)² "
                f"= {geometric:.4g} mL (tolerance {DEAD_VOLUME_RTOL:.0%} or "
                f"{DEAD_VOLUME_ATOL * 1000:g} µL); correct the length, the diameter or the "
                "dead volume")))
    return warnings
