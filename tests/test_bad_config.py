"""Configurations that used to pass check-config and then hang or crash the run are refused
by check-config with a located problem, each in under 5 s; unit strings are parsed, never
evaluated."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asab.cli.main import app
from asab.units import parse_quantity, to_canonical
from conftest import HIU_2023

runner = CliRunner()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8-sig")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def _drop_column(path: Path, column: str) -> None:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    i = lines[0].split(";").index(column)
    path.write_text("\n".join(";".join(c for j, c in enumerate(l.split(";")) if j != i)
                              for l in lines) + "\n", encoding="utf-8")


def _remove_valve(path: Path, name: str) -> None:
    text = path.read_text(encoding="utf-8")
    block = (f'[[valves]]\nname = "{name}"\ncommon = "{name}.0"\nports = 10\n'
             f'device = "Qmix_V_{name[1:]}"\n\n')
    assert block in text
    path.write_text(text.replace(block, ""), encoding="utf-8")


CASES = {
    "drain_factor = inf": ("bench.toml", "drain_factor = 1.5", "drain_factor = inf",
                           "settings.drain_factor"),
    "poll_interval = 1e-300": ("bench.toml", "poll_interval = 0.5", "poll_interval = 1e-300",
                               "settings.poll_interval"),
    "inner_diameter = 1e308": ("bench.toml", 'inner_diameter = "14.5673 mm"',
                               "inner_diameter = 1e308", "inner_diameter"),
    "ports = 10000000": ("bench.toml", 'common = "V4.0"\nports = 10',
                         'common = "V4.0"\nports = 10000000', "ports: 10000000 is not a count"),
    "method = ''": ("bench.toml", 'method = "Density_Viscosity"', 'method = ""',
                    "densimeter.method"),
    "total_flow = 10**10**10 mL/min": ("bench.toml", 'total_flow = "3 mL/min"',
                                       'total_flow = "10**10**10 mL/min"', "total_flow"),
    "total_flow = 1/0 mL/min": ("bench.toml", 'total_flow = "3 mL/min"',
                                'total_flow = "1/0 mL/min"', "total_flow"),
    "total_flow = 3 mL/min)": ("bench.toml", 'total_flow = "3 mL/min"',
                               'total_flow = "3 mL/min)"', "total_flow"),
    "total_flow = 5000 *1 terms": ("bench.toml", 'total_flow = "3 mL/min"',
                                   'total_flow = "3' + "*1" * 5000 + ' mL/min"', "total_flow"),
    "reversed directed tube": ("tubing.csv", "V10.9;0488-CC-3;waste_2",
                               "waste_2;0488-CC-3;V10.9", "densiVisco"),
    "deleted tubing row": ("tubing.csv", "V8.8;2602-NT-1;densiViscoIN\n", "",
                           "no sample reaches its inlet"),
    "instrument outlet equal to its inlet": ("bench.toml", 'outlet = "densiViscoOUT"',
                                             'outlet = "densiViscoIN"', "same node"),
}


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    dest = tmp_path / "bench"
    shutil.copytree(HIU_2023, dest)
    return dest


def check(folder: Path) -> tuple[int, list[dict], float]:
    t0 = time.monotonic()
    result = runner.invoke(app, ["check-config", str(folder), "--json"])
    elapsed = time.monotonic() - t0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.stdout).get("problems", []), elapsed


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_bench_is_refused_quickly_with_a_located_problem(bench: Path, case: str) -> None:
    file, old, new, word = CASES[case]
    edit(bench / file, old, new)
    code, problems, elapsed = check(bench)
    assert code == 1, case
    assert any(word in p["reason"] for p in problems), problems
    assert elapsed < 5, elapsed


def test_a_valve_the_tubing_uses_without_its_entry(bench: Path) -> None:
    _remove_valve(bench / "bench.toml", "V3")
    code, problems, _ = check(bench)
    assert code == 1
    assert any(p["reason"].startswith("node V3.0 is joined by fixed edges to V3.1, V3.10")
               and "no [[valves]] entry has common = 'V3.0'" in p["reason"] for p in problems)


def test_a_chemical_table_without_densities(bench: Path) -> None:
    _drop_column(bench / "chemicals.csv", "density_g_per_cm3")
    code, problems, _ = check(bench)
    assert code == 1
    assert any("solvent chemical 'EMC' has no density" in p["reason"] for p in problems)


def test_a_50_mb_table_is_refused_at_once(bench: Path) -> None:
    with (bench / "nodes.csv").open("a", encoding="utf-8") as fh:
        fh.write("\n" * 50_000_000)
    code, problems, elapsed = check(bench)
    assert code == 1 and elapsed < 5
    assert any(p["file"] == "nodes.csv" and "larger than" in p["reason"] for p in problems)


@pytest.mark.parametrize("text", ["10**10**10 mL/min", "1/0 mL/min", "3 mL/min)", "3" + "*1" * 5000,
                                  "1e999 mL", "nan mL", "٣ mL", "3 mL; import os", "(3) mL"])
def test_unit_strings_are_never_evaluated(text: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ValueError):
        to_canonical(text, "flow" if "min" in text else "volume")
    assert time.monotonic() - t0 < 0.1


def test_plain_quantities_still_read() -> None:
    assert parse_quantity("14.5673 mm") == (14.5673, "mm")
    assert to_canonical("3 mL/min", "flow") == pytest.approx(0.05)
    assert to_canonical("25 degC", "temperature") == pytest.approx(298.15)
    assert to_canonical("1.5 g/cm**3", "density") == pytest.approx(1.5)
    assert to_canonical("2 mPa·s", "viscosity") == pytest.approx(2.0)
    with pytest.raises(ValueError):
        to_canonical(float("inf"), "volume")


@pytest.mark.parametrize("args, words", [
    (["--volume", "1e300"], "more than the 1000 mL one formulation may have"),
    (["--policy", ""], "--policy must be 'reject' or 'closest', not ''"),
])
def test_formulate_bounds_match_the_servers(args: list[str], words: str) -> None:
    result = runner.invoke(app, ["formulate", "LiPF6=0.07,EC=0.29,EMC=0.64", *args])
    assert result.exit_code == 1 and words in " ".join(result.stderr.split())


@pytest.mark.parametrize("text", ["LiPF6=٠.07,EC=0.29,EMC=0.64", "LiPF6=０.07,EC=0.29,EMC=0.64"])
def test_non_ascii_digits_are_not_numbers(text: str) -> None:
    result = runner.invoke(app, ["formulate", text])
    assert result.exit_code == 1 and "is not a number" in result.stderr


def test_non_ascii_digits_in_a_table_are_not_numbers(bench: Path) -> None:
    edit(bench / "edges.csv", ";0999-CC-4;not_fixed;not_fixed;CC;999;", ";0999-CC-4;not_fixed;not_fixed;CC;٩٩٩;")
    code, problems, _ = check(bench)
    assert code == 1 and any("'٩٩٩' is not a number" in p["reason"] for p in problems)
