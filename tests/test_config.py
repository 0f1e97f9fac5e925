"""Tests of the bench configuration loader (asab.config.loader and its modules).

Broken variants are built in ``tmp_path`` by copying the 2023 bench and editing one thing;
expected line numbers are found in the raw files by simple text search, independently of
the loader.
"""

from __future__ import annotations

import ast
import csv
import logging
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asab.config import models
from asab.config.bench_toml import QUANTITY_FIELDS, leading_comment, ports_positions
from asab.config.loader import (
    check_bench, load_bench, load_chemicals, load_legacy_layout, load_stocks, summarize,
)
from asab.config.models import BenchConfig
from asab.errors import ConfigError, Problem
from asab.units import CANONICAL

ROOT = Path(__file__).resolve().parents[1]
BENCH_2023 = ROOT / "hardware_configs" / "hiu_2023"
LAYOUT_2022 = ROOT / "hardware_configs" / "hiu_2022"
LIPF6, EC, EMC = (
    "AXPLOJNSKRXQPA-UHFFFAOYSA-N", "KMTRUDSVKNLOMY-UHFFFAOYSA-N", "JBTWLSYIZRCDFO-UHFFFAOYSA-N",
)


# ------------------------------------------------------------------------------- helpers
def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8-sig").splitlines()


def line_of(path: Path, needle: str) -> int:
    """Physical line number (1-based) of the first line containing ``needle``."""
    for number, line in enumerate(lines_of(path), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def lines_with(path: Path, needle: str) -> list[int]:
    """Physical line numbers of every line containing ``needle``."""
    return [n for n, line in enumerate(lines_of(path), start=1) if needle in line]


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def edit_line(path: Path, number: int, old: str, new: str) -> None:
    lines = lines_of(path)
    assert old in lines[number - 1], (old, lines[number - 1])
    lines[number - 1] = lines[number - 1].replace(old, new, 1)
    write_lines(path, lines)


def append_line(path: Path, text: str) -> int:
    lines = lines_of(path)
    lines.append(text)
    write_lines(path, lines)
    return len(lines)


def replace_text(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def problems_of(folder: Path, **kwargs: bool) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_bench(folder, **kwargs)
    return info.value.problems


def find(problems: list[Problem], file: str, row: int | None, *words: str) -> Problem:
    for p in problems:
        if p.file == file and p.row == row and all(w in p.reason for w in words):
            return p
    listing = "\n".join(map(str, problems))
    raise AssertionError(f"no problem in {file} row {row} with {words}; got:\n{listing}")


@pytest.fixture(scope="module")
def bench() -> BenchConfig:
    return load_bench(BENCH_2023)


@pytest.fixture
def copy2023(tmp_path: Path) -> Path:
    dest = tmp_path / "bench"
    shutil.copytree(BENCH_2023, dest)
    return dest


# ------------------------------------------------------------------------ the 2023 bench
def test_2023_bench_loads(bench: BenchConfig) -> None:
    edges_raw = lines_of(BENCH_2023 / "edges.csv")
    fixed_rows = sum(1 for line in edges_raw if line.startswith("fixed;"))
    placements = sum(1 for line in lines_of(BENCH_2023 / "tubing.csv")[1:] if line.strip())
    assert len(bench.tubing.nodes) == 151
    assert len(bench.tubing.edges) == fixed_rows + placements == 111 + 60
    assert [p.name for p in bench.pumps] == ["A0.0", "B0.0", "C0.0", "D0.0", "E0.0", "F0.0"]
    assert len(bench.valves) == 11
    assert bench.valve("V3").positions == {f"V3.{i}": i - 1 for i in range(1, 11)}
    solenoid = bench.valve("ArdV_0_1")
    assert solenoid.kind == "solenoid" and solenoid.driver == "none"
    assert solenoid.positions == {"ArdV_0_1.0": 0, "ArdV_0_1.1": 1}
    assert [i.name for i in bench.instruments] == ["densiVisco", "electrochemistry", "nmr"]
    assert bench.syringe_of("A0.0").volume == pytest.approx(10.0, abs=1e-3)
    assert bench.syringe("10_mL").inner_diameter == 14.5673
    assert bench.settings.total_flow == pytest.approx(0.05)
    assert bench.settings.aspirate_flow == pytest.approx(0.1)
    assert "BIG-MAP/FINALES_ASAB_tenant" in bench.attribution
    assert bench.balance is not None and bench.balance.vessel == "waste_2"


def test_2023_stocks_and_chemicals(bench: BenchConfig) -> None:
    assert [s.name for s in bench.stocks] == [
        "1.5M-LiPF6-EC-EMC", "1.5M-LiPF6-EMC", "EC-EMC", "EMC",
    ]
    first = bench.stock("1.5M-LiPF6-EC-EMC")
    assert (first.total_mass, first.density, first.density_temperature) == (60.1237, 1.288, 299.8)
    assert first.reservoir == "Reservoir6" and first.pump == "A0.0"
    assert {k: c.mass for k, c in first.components.items()} == {
        LIPF6: 10.62, EC: 24.752, EMC: 24.752,
    }
    assert bench.stock("EMC").components[EMC].mass == 44.96
    assert bench.stock("1.5M-LiPF6-EMC").total_mass == 51.1853
    assert bench.stock("EC-EMC").components[EC].uncertainty == 0.001
    assert len(bench.chemicals) == 7
    assert bench.chemical("ec").molar_mass == 88.062
    assert bench.chemical(LIPF6).name == "LiPF6"


def test_placed_tube_takes_tubing_ends_and_edge_direction(bench: BenchConfig) -> None:
    edges = {e.label: e for e in bench.tubing.edges}
    waste_tube = edges["0999-CC-4"]  # tubing.csv: V1.10;0999-CC-4;waste_1, edges.csv: directed
    assert (waste_tube.start, waste_tube.end, waste_tube.directed) == ("V1.10", "waste_1", True)
    assert (waste_tube.length, waste_tube.inner_diameter, waste_tube.dead_volume) == (
        999, 0.3, 0.0706,
    )
    assert not waste_tube.fixed
    assert edges["0004-XX-1"].fixed and not edges["0004-XX-1"].directed
    assert "0601-NN-6" not in edges  # a drawer tube tubing.csv does not place
    cell = edges["0000-XX-13"]  # note is quoted and contains ';'
    assert cell.note.startswith("measuring cell densimeter: 225 mm") and ";" in cell.note
    assert cell.note.endswith("is not contained")
    assert bench.tubing.nodes[0].name == "A0.0"  # byte-order mark stripped
    assert bench.tubing.nodes[0].position == (0.0, -6.0)


def test_mot_fixed_typo_is_reported(tmp_path: Path) -> None:
    """The original 2023 file has `mot_fixed` in the end column of drawer tube 0601-NN-6; the
    shipped copy is corrected (see its README). Put the typo back: it must be reported."""
    shutil.copytree(BENCH_2023, tmp_path / "b")
    edges = tmp_path / "b" / "edges.csv"
    line = line_of(edges, "0601-NN-6")
    edit_line(edges, line, "not_fixed;not_fixed;NN;601", "not_fixed;mot_fixed;NN;601")
    _, problems = load_legacy_layout(tmp_path / "b")
    find(problems, "edges.csv", line, "'0601-NN-6'", "unknown end value 'mot_fixed'")
    assert load_legacy_layout(BENCH_2023)[1] == []


def test_check_bench_and_summary(bench: BenchConfig) -> None:
    assert check_bench(bench) == []
    summary = summarize(bench)
    assert summary["name"] == "hiu_2023"
    counts = {k: v["count"] for k, v in summary.items() if isinstance(v, dict)}
    assert counts == {
        "nodes": 151, "edges": 171, "syringes": 1, "pumps": 6, "valves": 11,
        "instruments": 3, "stocks": 4, "chemicals": 7,
    }
    assert "densiVisco" in summary["instruments"]["names"]
    assert len(summary["nodes"]["names"]) == 151


def test_load_bench_accepts_the_toml_file(bench: BenchConfig) -> None:
    assert load_bench(BENCH_2023 / "bench.toml") == bench


def test_missing_bench_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_bench(tmp_path)
    assert "no bench file" in info.value.problems[0].reason


def test_crlf_without_bom_loads_identically(copy2023: Path) -> None:
    for name in ("nodes.csv", "edges.csv", "tubing.csv"):
        text = (copy2023 / name).read_text(encoding="utf-8-sig")
        (copy2023 / name).write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
    tubing, problems = load_legacy_layout(copy2023)
    assert problems == []
    assert tubing == load_legacy_layout(BENCH_2023)[0]


# ------------------------------------------------------------------------------ hiu_2022
def _raw_duplicates(path: Path) -> tuple[set[str], set[str]]:
    """(labels occurring more than once, those whose rows differ) by plain string splitting."""
    rows: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for line in lines_of(path)[1:]:
        cells = line.split(";")
        if len(cells) > 8:
            rows[cells[1]].append(tuple(cells[:4] + cells[5:9]))  # skip `ends`, status, note
    twice = {label for label, found in rows.items() if len(found) > 1}
    return twice, {label for label in twice if len(set(rows[label])) > 1}


def test_hiu_2022_names_every_duplicate_label() -> None:
    twice, differing = _raw_duplicates(LAYOUT_2022 / "edges.csv")
    assert len(twice) == 16 and len(differing) == 2
    _, problems = load_legacy_layout(LAYOUT_2022)
    reported = {label for label in twice for p in problems if f"'{label}'" in p.reason}
    assert reported == twice
    assert all(p.file == "edges.csv" and "defined twice" in p.reason for p in problems)
    assert len(problems) == 16
    conflicting = {label for label in twice for p in problems
                   if f"'{label}'" in p.reason and "different properties" in p.reason}
    assert conflicting == differing
    first, second = lines_with(LAYOUT_2022 / "edges.csv", ";2602-NT-1;")
    find(problems, "edges.csv", second, "'2602-NT-1'", f"lines {first} and {second}", "diameter")


def test_hiu_2022_first_wins(caplog: pytest.LogCaptureFixture) -> None:
    twice, _ = _raw_duplicates(LAYOUT_2022 / "edges.csv")
    with caplog.at_level(logging.WARNING, logger="asab.config"):
        tubing, problems = load_legacy_layout(LAYOUT_2022, first_wins=True)
    assert problems == []
    assert all(label in caplog.text for label in twice)
    edges = {e.label: e for e in tubing.edges}
    assert edges["2602-NT-1"].inner_diameter == 1.6  # the first row (line 193) wins
    assert edges["2602-NT-1"].end == "densioViscoIN"
    assert "0265-NT-1" not in edges  # broken, and not placed


def test_hiu_2022_valve_dict_follows_the_ports_convention() -> None:
    text = (LAYOUT_2022 / "valvePositionDict.txt").read_text(encoding="utf-8")
    valves = ast.literal_eval(text)
    for n in range(1, 11):
        assert valves[f"V{n}"] == ports_positions(f"V{n}", 10)


# ---------------------------------------------------------------- one problem per kind
def _unknown_tubing_end(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "tubing.csv", "0282-NC-6")
    edit_line(d / "tubing.csv", n, "M1.6", "M9.9")
    return "tubing.csv", n, ("end node 'M9.9'", "nodes.csv")


def _unknown_tubing_start(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "tubing.csv", "0498-NC-1")
    edit_line(d / "tubing.csv", n, "D0.0", "Q0.0")
    return "tubing.csv", n, ("start node 'Q0.0'",)


def _label_missing(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "tubing.csv", "0284-NC-1")
    edit_line(d / "tubing.csv", n, "0284-NC-1", "0404-NT")
    return "tubing.csv", n, ("'0404-NT'", "not in edges.csv")


def _conflicting_duplicate(d: Path) -> tuple[str, int, tuple[str, ...]]:
    first = line_of(d / "edges.csv", "0282-NC-6")
    row = "available;0282-NC-6;not_fixed;not_fixed;NC;282;0.5;0.05;undirected;empty;"
    n = append_line(d / "edges.csv", row)
    return "edges.csv", n, ("'0282-NC-6'", f"lines {first} and {n}", "diameter, dead_volume")


def _unknown_flexibility(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "edges.csv", "0004-XX-7;")
    edit_line(d / "edges.csv", n, "fixed;", "mot_fixed;")
    return "edges.csv", n, ("unknown flexibility 'mot_fixed'",)


def _unknown_restriction(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "edges.csv", "0707-CC-1")
    edit_line(d / "edges.csv", n, ";directed;", ";oneway;")
    return "edges.csv", n, ("unknown restriction 'oneway'",)


def _non_numeric(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "edges.csv", "0004-XX-12;")
    edit_line(d / "edges.csv", n, ";14.77;", ";14,77 mm;")
    return "edges.csv", n, ("length", "'14,77 mm' is not a number")


def _negative(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "edges.csv", "0500-NC-3")
    edit_line(d / "edges.csv", n, ";0.0353;", ";-0.0353;")
    return "edges.csv", n, ("dead_volume", "must be >= 0")


def _zero_diameter(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "edges.csv", "0040-CC-3")
    edit_line(d / "edges.csv", n, ";0.3;", ";0;")
    return "edges.csv", n, ("diameter", "must be > 0")


def _fixed_end_not_node(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "edges.csv", "0004-XX-101;")
    edit_line(d / "edges.csv", n, "M1.1;", "M1.9;")
    return "edges.csv", n, ("fixed edge '0004-XX-101'", "start 'M1.9'")


def _placed_twice(d: Path) -> tuple[str, int, tuple[str, ...]]:
    first = line_of(d / "tubing.csv", "0282-NC-6")
    n = append_line(d / "tubing.csv", "V7.2;0282-NC-6;V7.3")
    return "tubing.csv", n, ("placed twice", f"line {first}")


def _broken_tube_placed(d: Path) -> tuple[str, int, tuple[str, ...]]:
    edge_line = line_of(d / "edges.csv", "0399-NC-1")
    edit_line(d / "edges.csv", edge_line, "available;", "broken;")
    return "tubing.csv", line_of(d / "tubing.csv", "0399-NC-1"), ("broken", f"line {edge_line}")


def _bad_position(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "nodes.csv", "vial_3;")
    edit_line(d / "nodes.csv", n, "(", "(x")
    return "nodes.csv", n, ("'vial_3'", "position_node")


def _duplicate_node(d: Path) -> tuple[str, int, tuple[str, ...]]:
    first = line_of(d / "nodes.csv", "waste_2;")
    n = append_line(d / "nodes.csv", "waste_2;(1,1)")
    return "nodes.csv", n, ("'waste_2' listed twice", f"lines {first} and {n}")


def _stock_mass_exceeds(d: Path) -> tuple[str, int, tuple[str, ...]]:
    edit_line(d / "stockSolutions.csv", 2, ";60.1237;", ";60.11;")
    return "stockSolutions.csv", 2, ("component masses add up to 60.124 g", "60.11 g")


def _stock_unknown_inchikey(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "chemicals.csv", EMC)
    lines = lines_of(d / "chemicals.csv")
    write_lines(d / "chemicals.csv", lines[: n - 1] + lines[n:])
    return "stockSolutions.csv", 1, (f"'{EMC}'", "not the InChIKey")


def _stock_reservoir(d: Path) -> tuple[str, int, tuple[str, ...]]:
    edit_line(d / "stockSolutions.csv", 3, ";Reservoir5;", ";Reservoir9;")
    return "stockSolutions.csv", 3, ("'1.5M-LiPF6-EMC'", "reservoir 'Reservoir9'")


def _stock_pump(d: Path) -> tuple[str, int, tuple[str, ...]]:
    edit_line(d / "stockSolutions.csv", 4, ";C0.0;", ";Z0.0;")
    return "stockSolutions.csv", 4, ("'EC-EMC'", "pump 'Z0.0' is not configured")


def _stock_bad_number(d: Path) -> tuple[str, int, tuple[str, ...]]:
    edit_line(d / "stockSolutions.csv", 5, ";1.005;", ";heavy;")
    return "stockSolutions.csv", 5, ("'EMC'", "density", "'heavy' is not a number")


def _chemical_bad_molar_mass(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "chemicals.csv", "DEC;")
    edit_line(d / "chemicals.csv", n, ";118.131;", ";-118;")
    return "chemicals.csv", n, ("'DEC'", "molar_mass_g_per_mol", "must be > 0")


def _chemical_bad_inchikey(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "chemicals.csv", "PC;")
    edit_line(d / "chemicals.csv", n, "RUOJZAUFBMNUDX-UHFFFAOYSA-N", "RUOJZAUFBMNUDX")
    return "chemicals.csv", n, ("'PC'", "not a standard InChIKey")


def _valve_channel_missing(d: Path) -> tuple[str, int, tuple[str, ...]]:
    n = line_of(d / "edges.csv", "0004-XX-3;")
    lines = lines_of(d / "edges.csv")
    write_lines(d / "edges.csv", lines[: n - 1] + lines[n:])
    common = line_of(d / "bench.toml", 'common = "V1.0"')  # the valve's line in bench.toml
    return "bench.toml", common, ("valve 'V1'", "'V1.0' <-> 'V1.3'", "not an edge")


CSV_CASES: list[Callable[[Path], tuple[str, int | None, tuple[str, ...]]]] = [
    _unknown_tubing_end, _unknown_tubing_start, _label_missing, _conflicting_duplicate,
    _unknown_flexibility, _unknown_restriction, _non_numeric, _negative, _zero_diameter,
    _fixed_end_not_node, _placed_twice, _broken_tube_placed, _bad_position, _duplicate_node,
    _stock_mass_exceeds, _stock_unknown_inchikey, _stock_reservoir, _stock_pump,
    _stock_bad_number, _chemical_bad_molar_mass, _chemical_bad_inchikey, _valve_channel_missing,
]


@pytest.mark.parametrize("case", CSV_CASES, ids=lambda c: c.__name__.strip("_"))
def test_csv_problem_is_reported_with_file_and_line(copy2023: Path, case: Callable) -> None:
    file, row, words = case(copy2023)
    find(problems_of(copy2023), file, row, *words)


_PUMP_C = 'syringe = "10_mL"\ndevice = "neMESYS_Low_Pressure_3_Pump"'
TOML_CASES = [
    # (id, old text, new text, words expected in a bench.toml problem)
    ("pump without syringe", _PUMP_C, _PUMP_C.replace("10_mL", "25_mL"),
     ("pump 'C0.0' without syringe", "'25_mL'")),
    ("pump node", 'node = "B0.0"', 'node = "B9.0"', ("pump 'B0.0' node", "'B9.0'")),
    ("valve common", 'common = "V4.0"', 'common = "V44.0"', ("valve 'V4' common", "'V44.0'")),
    ("valve port", '"ArdV_0_1.1" = 1', '"ArdV_0_1.7" = 1',
     ("valve 'ArdV_0_1' port", "'ArdV_0_1.7'")),
    ("instrument inlet", 'inlet = "nmrIN"', 'inlet = "nmrINN"', ("instrument 'nmr' inlet",)),
    ("instrument outlet", 'outlet = "densiViscoOUT"', 'outlet = "densioViscoOUT"',
     ("instrument 'densiVisco' outlet", "'densioViscoOUT'")),
    ("waste node", '"waste_1", "waste_2"]', '"waste_1", "waste_3"]',
     ("settings.waste_nodes", "'waste_3'")),
    ("gas node", '"pressurizedGas"]', '"nitrogen"]', ("settings.gas_nodes", "'nitrogen'")),
    ("solvent node", 'solvent_node = "Solvent"', 'solvent_node = "Solvent1"',
     ("settings.solvent_node",)),
    ("mixer outlet", 'mixer_outlet = "M1.0"', 'mixer_outlet = "M2.0"', ("settings.mixer_outlet",)),
    ("vial node", '"vial_8"]', '"vial_9"]', ("settings.vial_nodes", "'vial_9'")),
    ("solvent pump", 'solvent_pump = "F0.0"', 'solvent_pump = "G0.0"',
     ("settings.solvent_pump", "'G0.0'")),
    ("gas pump", 'gas_pump = "F0.0"', 'gas_pump = "H0.0"', ("settings.gas_pump", "'H0.0'")),
    ("solvent chemical", 'solvent_chemical = "EMC"', 'solvent_chemical = "acetone"',
     ("settings.solvent_chemical", "'acetone'")),
    ("balance vessel", 'vessel = "waste_2"', 'vessel = "beaker"', ("balance.vessel", "'beaker'")),
    ("densimeter instrument", 'instrument = "densiVisco"', 'instrument = "DMA"',
     ("densimeter.instrument", "'DMA'")),
    ("pydantic bound", "flush_factor = 1.5", "flush_factor = 0.5",
     ("settings.flush_factor", "greater than or equal to 1", "0.5")),
    ("unknown key", "flush_factor = 1.5", "flush_factor = 1.5\ncolour = 'red'",
     ("settings.colour", "Extra inputs are not permitted")),
    ("pydantic array field", 'name = "A0.0"\nnode = "A0.0"\n', 'name = "A0.0"\n',
     ("pumps[0] ('A0.0').node", "Field required")),
    ("literal field", 'parity = "O"', 'parity = "X"', ("balance.serial.parity",)),
    ("unreadable quantity", 'total_flow = "3 mL/min"', 'total_flow = "3 apples/min"',
     ("settings.total_flow", "3 apples/min")),
    ("wrong dimension", 'total_flow = "3 mL/min"', 'total_flow = "3 g"',
     ("settings.total_flow", "flow")),
    ("bad syringe quantity", 'stroke = "60 mm"', 'stroke = "60 mL"',
     ("syringes[0].stroke", "length")),
    ("ports and positions", 'ports = 10\ndevice = "Qmix_V_2"',
     'ports = 10\npositions = {}\ndevice = "Qmix_V_2"', ("valves[1]", "not both")),
    ("no ports", 'ports = 10\ndevice = "Qmix_V_5"', 'device = "Qmix_V_5"',
     ("valves[4]", "`ports = N`")),
    ("zero ports", 'ports = 10\ndevice = "Qmix_V_6"', 'ports = 0\ndevice = "Qmix_V_6"',
     ("valves[5].ports", "0")),
    ("layout key missing", 'tubing = "tubing.csv"\n', "", ("layout.tubing", "missing")),
    ("layout unknown key", 'tubing = "tubing.csv"\n', 'tubing = "tubing.csv"\npipes = "x.csv"\n',
     ("layout.pipes", "unknown key")),
    ("inline tubing", 'name = "hiu_2023"', 'name = "hiu_2023"\ntubing = []',
     ("tubing", "[layout]")),
]


def test_unreadable_quantity_is_reported_once(copy2023: Path) -> None:
    replace_text(copy2023 / "bench.toml", 'stroke = "60 mm"', 'stroke = "sixty mm"')
    problems = problems_of(copy2023)
    assert [p.reason.split(":")[0] for p in problems] == ["syringes[0].stroke"]


@pytest.mark.parametrize(
    "old,new,words", [c[1:] for c in TOML_CASES], ids=[c[0] for c in TOML_CASES]
)
def test_bench_toml_problem_names_the_field(
    copy2023: Path, old: str, new: str, words: tuple[str, ...]
) -> None:
    replace_text(copy2023 / "bench.toml", old, new)
    problems = problems_of(copy2023)
    hits = [p for p in problems if p.file == "bench.toml" and all(w in p.reason for w in words)]
    assert hits, "\n".join(map(str, problems))
    lines = (copy2023 / "bench.toml").read_text(encoding="utf-8").splitlines()
    assert all(p.row is None or 1 <= p.row <= len(lines) for p in hits)


def test_missing_layout_file(copy2023: Path) -> None:
    (copy2023 / "tubing.csv").unlink()
    find(problems_of(copy2023), "tubing.csv", None, "cannot read")


def test_missing_header_column(copy2023: Path) -> None:
    edit_line(copy2023 / "edges.csv", 1, ";restriction;", ";direction;")
    find(problems_of(copy2023), "edges.csv", 1, "missing column(s) restriction")


def test_toml_syntax_error_gives_line(copy2023: Path) -> None:
    replace_text(copy2023 / "bench.toml", 'name = "hiu_2023"', 'name = "hiu_2023')
    problem = problems_of(copy2023)[0]
    assert problem.file == "bench.toml" and "invalid TOML" in problem.reason
    assert problem.row == line_of(BENCH_2023 / "bench.toml", 'name = "hiu_2023"')


# ------------------------------------------------------------- collecting many problems
def test_several_problems_in_one_file_are_reported_together(copy2023: Path) -> None:
    edges = copy2023 / "edges.csv"
    a, b, c = (line_of(edges, s) for s in ("0004-XX-15;", "0004-XX-55;", "0040-CC-6"))
    edit_line(edges, a, ";undirected;", ";sideways;")
    edit_line(edges, b, ";14.77;1;", ";14.77;-1;")
    edit_line(edges, c, "available;", "spare;")
    edit_line(edges, c, ";0.0028;", ";lots;")  # a second problem on the same row
    t = line_of(copy2023 / "tubing.csv", "0399-NC-1")
    edit_line(copy2023 / "tubing.csv", t, "V7.1", "V7.11")
    problems = problems_of(copy2023)
    find(problems, "edges.csv", a, "sideways")
    find(problems, "edges.csv", b, "diameter")
    find(problems, "edges.csv", c, "flexibility 'spare'")
    find(problems, "edges.csv", c, "dead_volume", "'lots'")
    find(problems, "tubing.csv", t, "'V7.11'")


def test_identical_duplicate_is_reported(copy2023: Path, caplog: pytest.LogCaptureFixture) -> None:
    row = lines_of(copy2023 / "edges.csv")[line_of(copy2023 / "edges.csv", "0490-NC-6") - 1]
    n = append_line(copy2023 / "edges.csv", row)
    problems = problems_of(copy2023)
    find(problems, "edges.csv", n, "'0490-NC-6'", "identical")
    with caplog.at_level(logging.WARNING, logger="asab.config"):
        config = load_bench(copy2023, first_wins=True)
    assert len(config.tubing.edges) == 171
    assert "0490-NC-6" in caplog.text and f"and {n}" in caplog.text


def test_first_wins_accepts_a_conflicting_duplicate(
    copy2023: Path, caplog: pytest.LogCaptureFixture
) -> None:
    row = "available;0490-NC-6;not_fixed;not_fixed;NC;490;0.8;0.3;directed;"
    append_line(copy2023 / "edges.csv", row)
    problems_of(copy2023)  # rejected by default
    with caplog.at_level(logging.WARNING, logger="asab.config"):
        config = load_bench(copy2023, first_wins=True)
    tube = next(e for e in config.tubing.edges if e.label == "0490-NC-6")
    assert (tube.inner_diameter, tube.dead_volume, tube.directed) == (0.3, 0.0346, False)
    assert "first row wins" in caplog.text and "0490-NC-6" in caplog.text


def test_load_stocks_returns_problems_instead_of_raising(copy2023: Path) -> None:
    edit_line(copy2023 / "stockSolutions.csv", 2, ";60.1237;", ";x;")
    chemicals = load_chemicals(copy2023 / "chemicals.csv")
    stocks, problems = load_stocks(copy2023 / "stockSolutions.csv", chemicals)
    assert [s.name for s in stocks] == ["1.5M-LiPF6-EMC", "EC-EMC", "EMC"]
    find(problems, "stockSolutions.csv", 2, "mass_total")


def test_load_chemicals_raises_every_problem(copy2023: Path) -> None:
    path = copy2023 / "chemicals.csv"
    edit_line(path, 2, ";151.905;", ";;")
    append_line(path, "ec;KMTRUDSVKNLOMY-UHFFFAOYSA-N;C1COC(=O)O1;88.062;;;;;;")
    with pytest.raises(ConfigError) as info:
        load_chemicals(path)
    find(info.value.problems, "chemicals.csv", 2, "missing number")
    find(info.value.problems, "chemicals.csv", 9, "'ec'", "line 3")


# ------------------------------------------------------------------- TOML conveniences
@pytest.mark.parametrize(
    "text,expected",
    [('"3 mL/min"', 0.05), ('"50 uL/s"', 0.05), ("0.05", 0.05), ('"180 mL/h"', 0.05)],
)
def test_flow_quantities(copy2023: Path, text: str, expected: float) -> None:
    replace_text(copy2023 / "bench.toml", 'total_flow = "3 mL/min"', f"total_flow = {text}")
    assert load_bench(copy2023).settings.total_flow == pytest.approx(expected)


def test_temperature_and_attribution_key(copy2023: Path) -> None:
    toml = copy2023 / "bench.toml"
    replace_text(toml, "temperature = 298.15", 'temperature = "25 degC"')
    replace_text(toml, 'name = "hiu_2023"', 'name = "hiu_2023"\nattribution = "mine"')
    config = load_bench(copy2023)
    assert config.densimeter is not None
    assert config.densimeter.temperature == pytest.approx(298.15)
    assert config.attribution == "mine"


def test_leading_comment() -> None:
    text = "\n# first line\n#\n#   indented\nname = 'x'  # not this\n# nor this\n"
    assert leading_comment(text) == "first line\n\n  indented"
    assert leading_comment("name = 'x'\n# late") == ""


@settings(max_examples=30)
@given(st.integers(min_value=1, max_value=40), st.text("ABCV_0123456789", min_size=1, max_size=6))
def test_ports_positions(ports: int, name: str) -> None:
    positions = ports_positions(name, ports)
    assert sorted(positions.values()) == list(range(ports))
    assert all(positions[f"{name}.{i}"] == i - 1 for i in range(1, ports + 1))


_UNIT_WORDS = {"mL": "volume", "mL/s": "flow", "s": "time", "K": "temperature", "g": "mass",
               "mm": "length"}


def _unit_of(description: str) -> str | None:
    words = description.replace(",", " ").split()
    for i, word in enumerate(words):
        if word in _UNIT_WORDS and (i == 0 or words[i - 1] == "in"):
            return word
    return None


def test_quantity_table_matches_the_model_descriptions() -> None:
    sections = {
        "settings": models.BenchSettings, "cetoni": models.CetoniSettings,
        "syringes": models.Syringe, "instruments": models.Instrument,
        "balance": models.BalanceSettings, "balance.serial": models.SerialSettings,
        "densimeter": models.DensimeterSettings,
    }
    for section, model in sections.items():
        for name, info in model.model_fields.items():
            unit = _unit_of(info.description or "") if info.annotation is float else None
            kind = QUANTITY_FIELDS.get(section, {}).get(name)
            assert (kind is None) == (unit is None), f"{section}.{name}: {info.description}"
            if unit is not None:
                assert _UNIT_WORDS[unit] == kind, f"{section}.{name}"
                assert kind in CANONICAL


# ------------------------------------------------------------------ CSV round trip
_label = st.from_regex(r"[0-9]{4}-[A-Z]{2}-[0-9]{1,2}", fullmatch=True)
_number = st.floats(min_value=0.001, max_value=100, allow_nan=False).map(lambda x: round(x, 4))
_note = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30
)
_tube = st.tuples(_label, _number, _number, _number, st.booleans(), _note)


@settings(max_examples=20, deadline=None)
@given(st.lists(_tube, min_size=1, max_size=6, unique_by=lambda t: t[0]))
def test_drawer_tubes_round_trip_through_the_csv_files(tubes: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        nodes = [f"n{i}" for i in range(len(tubes) + 1)]
        _write(folder / "nodes.csv", [["node", "position_node"]] + [[n, "(0,0)"] for n in nodes])
        header = "flexibility;edge;start;end;ends;length;diameter;dead_volume;restriction;status"
        rows = [header.split(";") + [""]]
        for label, length, diameter, volume, directed, note in tubes:
            restriction = "directed" if directed else "undirected"
            rows.append(["available", label, "not_fixed", "not_fixed", "XX", repr(length),
                         repr(diameter), repr(volume), restriction, "empty", note])
        _write(folder / "edges.csv", rows, bom=True)
        placements = [[nodes[i], t[0], nodes[i + 1]] for i, t in enumerate(tubes)]
        _write(folder / "tubing.csv", [["start", "edge", "end"]] + placements)
        tubing, problems = load_legacy_layout(folder)
    assert problems == []
    got = {e.label: e for e in tubing.edges}
    for i, (label, length, diameter, volume, directed, note) in enumerate(tubes):
        edge = got[label]
        assert (edge.start, edge.end) == (nodes[i], nodes[i + 1])
        assert (edge.length, edge.inner_diameter, edge.dead_volume) == (length, diameter, volume)
        assert edge.directed is directed and edge.note == note.strip()


def _write(path: Path, rows: list[list[str]], bom: bool = False) -> None:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        csv.writer(fh, delimiter=";").writerows(rows)



def test_bench_toml_problems_carry_the_line_of_their_field(copy2023: Path) -> None:
    toml = copy2023 / "bench.toml"
    text = toml.read_text(encoding="utf-8")
    text = text.replace('total_flow = "3 mL/min"', 'total_flow = "3 apples"')
    text = text.replace('url = "/dev/ttyUSB0"', "url = 5")
    toml.write_text(text, encoding="utf-8")
    problems = problems_of(copy2023)
    lines = text.splitlines()
    for field, needle in (("settings.total_flow", "apples"), ("balance.serial.url", "url = 5")):
        p = next(p for p in problems if p.reason.startswith(field))
        assert p.row is not None and needle in lines[p.row - 1], (p, lines[p.row - 1] if p.row else None)


def test_cross_reference_problems_point_into_array_tables(copy2023: Path) -> None:
    toml = copy2023 / "bench.toml"
    text = toml.read_text(encoding="utf-8").replace(
        'syringe = "10_mL"\ndevice = "neMESYS_Low_Pressure_3_Pump"',
        'syringe = "20_mL"\ndevice = "neMESYS_Low_Pressure_3_Pump"')
    toml.write_text(text, encoding="utf-8")
    problems = problems_of(copy2023)
    p = next(p for p in problems if "20_mL" in p.reason)
    assert p.file == "bench.toml" and 'syringe = "20_mL"' in text.splitlines()[p.row - 1], p


def test_schema_errors_do_not_hide_cross_reference_problems(copy2023: Path) -> None:
    """One pump lacks its syringe field (schema), another names an unknown syringe, a valve an
    unknown common node: all three are reported together, without follow-on noise."""
    toml = copy2023 / "bench.toml"
    text = toml.read_text(encoding="utf-8")
    text = text.replace('name = "A0.0"\nnode = "A0.0"\nsyringe = "10_mL"\n', 'name = "A0.0"\nnode = "A0.0"\n')
    text = text.replace('syringe = "10_mL"\ndevice = "neMESYS_Low_Pressure_3_Pump"',
                        'syringe = "20_mL"\ndevice = "neMESYS_Low_Pressure_3_Pump"')
    text = text.replace('common = "V7.0"', 'common = "V7.x"')
    toml.write_text(text, encoding="utf-8")
    problems = problems_of(copy2023)
    reasons = [p.reason for p in problems]
    assert any("pumps[0] ('A0.0').syringe" in r and "Field required" in r for r in reasons)
    assert any("'20_mL' is not configured" in r for r in reasons)
    assert any("valve 'V7' common: 'V7.x'" in r for r in reasons)
    assert not any("'A0.0' is not configured" in r for r in reasons)  # follow-on dropped
    assert not any("'V7.x' <->" in r for r in reasons)
    assert len(problems) == 3, "\n".join(reasons)
