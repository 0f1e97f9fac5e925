"""Load and validate a bench: ``bench.toml`` plus the CSV files its ``[layout]`` names.

Public API (the pieces live in sibling modules and are re-exported here):

* :func:`load_bench` — the whole bench, or :class:`~asab.errors.ConfigError` with every
  problem found in every file; :func:`load_bench_report` — the same with the files, stock
  lines and warnings (for ``asab check-config``);
* :func:`load_legacy_layout` — the ASAB CSV tubing layout alone (returns its problems);
* :func:`load_chemicals`, :func:`load_stocks` — the chemical and stock tables;
* :func:`check_bench`, :func:`summarize` — cross-reference checks and a summary of a loaded
  configuration (for ``asab check-config``).

Problem locations: ``Problem.file`` is the file's name; ``Problem.row`` is the *physical line
number* in that file as a text editor shows it (header = line 1, blank lines counted), or
``None`` for problems that are not bound to a line (everything in ``bench.toml`` except TOML
syntax errors: the reason names the field instead).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from asab.config.benches import BENCH_FILE, is_dir, is_file, missing_bench
from asab.config.bench_toml import (
    BenchDocument, build_checkable, build_config, locate, read_bench_toml,
)
from asab.config.checks import Origin, check_bench, summarize
from asab.config.legacy_csv import load_legacy_layout, read_layout, tube_volume_warnings
from asab.config.models import BenchConfig, Chemical, Tubing
from asab.config.stocks import StockTable, load_chemicals, load_stocks, read_chemicals, read_stocks
from asab.errors import ConfigError, Problem

__all__ = [
    "BENCH_FILE", "LoadedBench", "Origin", "check_bench", "load_bench", "load_bench_report",
    "load_chemicals", "load_legacy_layout", "load_stocks", "summarize",
]

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class LoadedBench:
    """A bench as :func:`load_bench_report` read it.

    Attributes:
        config: the validated configuration.
        bench_file: the ``bench.toml`` read.
        layout: ``[layout]`` key → resolved CSV path.
        stock_file: file name of the stock table (for problems about stocks).
        stock_lines: stock name → physical line of its row in the stock table.
        warnings: what is worth fixing but does not stop the bench (e.g. a drawer tube whose
            dead volume disagrees with its length and diameter).
    """

    config: BenchConfig
    bench_file: Path
    layout: Mapping[str, Path]
    stock_file: str
    stock_lines: Mapping[str, int]
    warnings: tuple[Problem, ...] = ()


def load_bench(path: str | Path, *, first_wins: bool = False) -> BenchConfig:
    """Load, validate and cross-check a bench.

    Args:
        path: a folder containing ``bench.toml``, or the TOML file itself.
        first_wins: accept edge labels defined twice with different properties in the edge
            table (the first row wins, a warning is logged).

    Returns:
        The validated configuration, all numbers in canonical units. Warnings (see
        :class:`LoadedBench`) are logged at INFO level.

    Raises:
        ConfigError: with every problem found — in the TOML (unknown or invalid fields,
            unreadable quantities, pydantic errors naming the field), in each CSV file (with
            its physical line), and in the cross-references (:func:`check_bench`).
    """
    loaded = load_bench_report(path, first_wins=first_wins)
    for warning in loaded.warnings:  # asab check-config shows them
        logger.info("%s", warning)
    return loaded.config


def load_bench_report(path: str | Path, *, first_wins: bool = False) -> LoadedBench:
    """Like :func:`load_bench`, returning where each part came from and the warnings too.

    Raises:
        ConfigError: as :func:`load_bench`.
    """
    toml_path = _bench_file(Path(path))
    doc = read_bench_toml(toml_path)
    problems = list(doc.problems)
    tubing = _layout(doc, first_wins, problems)
    chemicals = _chemicals(doc, problems)
    stocks = _stocks(doc, chemicals, problems)
    config, build_problems = build_config(
        doc, chemicals=chemicals, stocks=stocks.stocks, tubing=tubing
    )
    problems += build_problems
    checkable, dropped = config, set()
    if config is None:  # check the valid parts too, so every problem shows at once
        checkable, dropped = build_checkable(
            doc, chemicals=chemicals, stocks=stocks.stocks, tubing=tubing)
    stock_file = doc.layout["stocks"].name if "stocks" in doc.layout else Origin.stocks
    if checkable is not None and checkable.tubing.nodes:
        origin = Origin(bench=toml_path.name, stocks=stock_file, stock_lines=stocks.lines)
        problems += [p for p in check_bench(checkable, origin=origin)
                     if not any(repr(d) in p.reason or p.reason.startswith(d) for d in dropped)]
    if problems or config is None:
        raise ConfigError(_with_lines(problems, toml_path))
    logger.info(
        "loaded bench %r from %s: %d nodes, %d edges, %d pumps, %d valves",
        config.name, toml_path, len(config.tubing.nodes), len(config.tubing.edges),
        len(config.pumps), len(config.valves),
    )
    warnings = tuple(tube_volume_warnings(doc.layout["edges"]))
    return LoadedBench(config, toml_path, dict(doc.layout), stock_file, dict(stocks.lines),
                       warnings)


def _bench_file(path: Path) -> Path:
    candidate = path / BENCH_FILE if is_dir(path) else path
    if not is_file(candidate):
        raise ConfigError([Problem(candidate.name, None, (
            f"{missing_bench(path)}: a bench is a folder holding {BENCH_FILE} "
            "(or that file itself)"))])
    return candidate


def _layout(doc: BenchDocument, first_wins: bool, problems: list[Problem]) -> Tubing:
    paths = [doc.layout.get(key) for key in ("nodes", "edges", "tubing")]
    if any(p is None for p in paths):
        return Tubing(nodes=(), edges=())  # already reported by read_bench_toml
    nodes, edges, tubing = (p for p in paths if p is not None)
    layout, layout_problems = read_layout(nodes, edges, tubing, first_wins=first_wins)
    problems += layout_problems
    return layout


def _chemicals(doc: BenchDocument, problems: list[Problem]) -> tuple[Chemical, ...]:
    path = doc.layout.get("chemicals")
    if path is None:
        return ()
    chemicals, chemical_problems = read_chemicals(path)
    problems += chemical_problems
    return chemicals


def _stocks(
    doc: BenchDocument, chemicals: tuple[Chemical, ...], problems: list[Problem]
) -> StockTable:
    path = doc.layout.get("stocks")
    if path is None:
        return StockTable(())
    table = read_stocks(path, chemicals)
    problems += table.problems
    return table


def _with_lines(problems: list[Problem], toml_path: Path) -> list[Problem]:
    """Give problems of ``bench.toml`` that name a field the line of that field."""
    try:
        text = toml_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return problems
    return [Problem(p.file, locate(text, p.reason), p.reason)
            if p.file == toml_path.name and p.row is None else p for p in problems]
