"""`asab check-config` proves a bench can work: copies of the 2023 bench broken on purpose,
one kind of break each, are refused with one problem naming the stock or node and the cause;
tubes whose dead volume disagrees with their geometry are warnings (exit 0)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asab.cli.main import app
from asab.config.legacy_csv import tube_volume, tube_volume_warnings
from asab.config.loader import load_bench
from asab.tubing.operability import check_operable
from conftest import HIU_2023

runner = CliRunner()


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    dest = tmp_path / "bench"
    shutil.copytree(HIU_2023, dest)
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8-sig")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def check(folder: Path) -> tuple[int, list[dict], list[dict]]:
    result = runner.invoke(app, ["check-config", str(folder), "--json"])
    doc = json.loads(result.stdout)
    return result.exit_code, doc.get("problems", []), doc.get("warnings", [])


def test_the_2023_bench_can_work() -> None:
    report = check_operable(load_bench(HIU_2023))
    assert report.problems == []
    assert report.routes_checked >= 30
    code, problems, warnings = check(HIU_2023)
    assert code == 0 and problems == []
    # the published table has two drawer tubes whose dead volume is not their geometry's
    assert sorted(w["row"] for w in warnings) == [151, 164]


# one break per kind: (file, old text, new text, words the one problem must contain)
BREAKS = {
    "stock on a reservoir its pump cannot reach": (
        "stockSolutions.csv", ";Reservoir3;D0.0;", ";Reservoir1;D0.0;",
        ["stock 'EMC'", "its pump D0.0 cannot draw from its reservoir",
         "Reservoir1 to D0.0", "two positions of valve(s) V1"]),
    "no tube from the distribution valve to the cell": (
        "tubing.csv", "V8.8;2602-NT-1;densiViscoIN", "V8.8;2602-NT-1;nmrIN",
        ["instrument 'densiVisco': no sample reaches its inlet from the mixer",
         "M1.0 to densiViscoIN"]),
    "the cell's outlet leads nowhere": (
        "tubing.csv", "V9.8;3439-NT-2;densiViscoOUT", "V9.8;3439-NT-2;nmrOUT",
        ["instrument 'densiVisco': its outlet leads to no waste", "densiViscoOUT"]),
    "cleaning solvent the solvent pump cannot draw": (
        "bench.toml", 'solvent_pump = "F0.0"', 'solvent_pump = "E0.0"\nsolvent_node = "Reservoir1"',
        ["solvent pump E0.0 cannot draw solvent from 'Reservoir1'", "valve(s) V1"]),
    "a vial the mixer cannot reach": (
        "bench.toml", 'vial_nodes = ["vial_1",', 'vial_nodes = ["Reservoir2", "vial_1",',
        ["vial 'Reservoir2' cannot be reached from the mixer", "M1.0 to Reservoir2"]),
    "instrument outlet equal to its inlet": (
        "bench.toml", 'outlet = "densiViscoOUT"', 'outlet = "densiViscoIN"',
        ["instrument 'densiVisco': inlet and outlet are the same node 'densiViscoIN'"]),
}


@pytest.mark.parametrize("kind", list(BREAKS))
def test_a_broken_bench_is_refused_with_one_located_problem(bench: Path, kind: str) -> None:
    file, old, new, words = BREAKS[kind]
    if file == "bench.toml" and "solvent_node" in new:
        edit(bench / file, 'solvent_node = "Solvent"\n', "")
    edit(bench / file, old, new)
    code, problems, _ = check(bench)
    assert code == 1
    hits = [p for p in problems if all(w in p["reason"] for w in words)]
    assert len(hits) == 1 and len(problems) == 1, problems  # the cause, no follow-on noise
    if file == "stockSolutions.csv":
        assert hits[0]["file"] == "stockSolutions.csv" and hits[0]["row"] == 5


def test_the_problems_print_for_a_person(bench: Path) -> None:
    edit(bench / "stockSolutions.csv", ";Reservoir3;D0.0;", ";Reservoir1;D0.0;")
    result = runner.invoke(app, ["check-config", str(bench)])
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())
    assert re.search(r"1 problem\(s\) in .*bench", text)
    assert "stockSolutions.csv, line 5: stock 'EMC': its pump D0.0 cannot draw" in text


def test_a_tube_whose_length_was_edited_is_a_warning_with_both_numbers(bench: Path) -> None:
    # 0999-CC-4 (V1.10 → waste_1): 999 mm of 0.3 mm tube, 0.0706 mL; made 1500 mm long
    edit(bench / "edges.csv", ";0999-CC-4;not_fixed;not_fixed;CC;999;", ";0999-CC-4;not_fixed;not_fixed;CC;1500;")
    code, problems, warnings = check(bench)
    assert code == 0 and problems == []
    hit = [w for w in warnings if "'0999-CC-4'" in w["reason"]]
    assert len(hit) == 1
    assert "dead_volume 0.0706 mL" in hit[0]["reason"]
    assert f"= {tube_volume(1500, 0.3):.4g} mL" in hit[0]["reason"]
    result = runner.invoke(app, ["check-config", str(bench)])
    assert result.exit_code == 0 and "3 warning(s)" in result.stderr


def test_tube_volume_tolerance() -> None:
    assert tube_volume(1000, 1.6) == pytest.approx(2.0106, abs=1e-4)
    assert [w.row for w in tube_volume_warnings(HIU_2023 / "edges.csv")] == [151, 164]


def test_asab_run_refuses_a_bench_that_cannot_work_before_moving_anything(bench: Path, tmp_path: Path) -> None:
    edit(bench / "stockSolutions.csv", ";Reservoir3;D0.0;", ";Reservoir1;D0.0;")
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--config", str(bench), "--out", str(out)])
    assert result.exit_code == 1  # asab.cli.main.main prints the ConfigError, exit 1
    assert "its pump D0.0 cannot draw from its reservoir" in str(result.exception)
    assert not out.exists()
