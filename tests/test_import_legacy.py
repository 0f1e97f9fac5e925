"""`asab import-legacy`: the original ASAB project's bench files → a bench folder asab loads.

The dict-literal files are read as data, never executed; what the 2022 files do not say is
left for the operator and listed by check-config; route and draw work on the import at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asab.cli.main import app
from asab.config.legacy_import import import_legacy, read_literal
from asab.config.loader import load_bench
from asab.errors import ConfigError
from asab.tubing import TubingGraph
from conftest import ROOT

LAYOUT_2022 = ROOT / "hardware_configs" / "hiu_2022"
runner = CliRunner()


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("import") / "hiu_2022"
    result = runner.invoke(app, ["import-legacy", str(LAYOUT_2022), "--out", str(out), "--first-wins"])
    assert result.exit_code == 0, result.output
    return out


def test_without_first_wins_the_duplicates_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["import-legacy", str(LAYOUT_2022), "--out", str(out), "--json"])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert len(problems) == 16 and all("--first-wins" in p["reason"] for p in problems)
    assert not out.exists()


def test_the_import_loads_and_routes(imported: Path) -> None:
    cfg = load_bench(imported)  # no --first-wins needed any more: duplicates were left out
    assert len(cfg.tubing.nodes) == 175
    assert {v.name for v in cfg.valves} == {f"V{n}" for n in range(1, 11)} | {f"{p}v" for p in "ABCDEF"}
    assert cfg.valve("Av").common == "A0.1" and cfg.valve("Av").kind == "pump_valve"
    assert cfg.valve("V6").positions == {f"V6.{i}": i - 1 for i in range(1, 11)}
    assert cfg.syringe("10_mL").inner_diameter == 14.5673
    assert cfg.syringe("10_mL").min_fill_fraction == pytest.approx(1.5 / 10.0, rel=1e-3)
    assert cfg.pumps == () and cfg.instruments == () and cfg.balance is None
    assert cfg.settings.waste_nodes == ("waste_1", "waste_2")
    route = TubingGraph.from_config(cfg).route("A0.0", "M1.0")
    assert route.valve_settings == {"Av": 1}
    edges = (imported / "edges.csv").read_text(encoding="utf-8-sig").splitlines()
    source = (LAYOUT_2022 / "edges.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(source) - len(edges) == 16


def test_the_guesses_are_printed_with_their_lines(tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = runner.invoke(app, ["import-legacy", str(LAYOUT_2022), "--out", str(out),
                                 "--first-wins", "--json"])
    doc = json.loads(result.stdout)
    notes = {(n["file"], n["row"]): n["text"] for n in doc["notes"]}
    assert notes[("nodes.csv", 154)].startswith("settings.waste_nodes = ['waste_1', 'waste_2']")
    assert notes[("nodes.csv", 148)].startswith("settings.solvent_node = 'Solvent1'")
    assert "also present: Solvent2" in notes[("nodes.csv", 148)]
    assert notes[("edges.csv", 236)] == (
        "left out: edge label '2622-NT-2' defined again as a DIFFERENT tube (other properties); "
        "the row on line 195 is kept (--first-wins)")
    assert "defined again as the same tube" in notes[("edges.csv", 238)]
    assert any(n["text"].startswith("valve 'Av': common = 'A0.1'") and n["row"] == 1
               for n in doc["notes"])
    assert any(g.startswith("[[pumps]]") and "A0.0, B0.0" in g for g in doc["gaps"])


def test_check_config_lists_each_gap_naming_the_key(imported: Path) -> None:
    result = runner.invoke(app, ["check-config", str(imported), "--json"])
    assert result.exit_code == 1
    reasons = [p["reason"] for p in json.loads(result.stdout)["problems"]]
    for key in ("no [[instruments]] entry", "no [densimeter] section", "no [balance] section",
                "no [[pumps]]", "no stock solutions", "settings.solvent_pump is not set",
                "valves without a device name: V10, V1, V2"):
        assert sum(r.startswith(key) for r in reasons) == 1, (key, reasons)


def test_route_and_draw_work_on_the_import(imported: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["route", "A0.0", "M1.0", "--config", str(imported), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valve_settings"] == {"Av": 1}
    png = tmp_path / "bench.png"
    result = runner.invoke(app, ["draw", "--config", str(imported), "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 10_000


def test_filling_the_templates_makes_the_gaps_go(imported: Path, tmp_path: Path) -> None:
    """The operator's next step: fill pumps and instruments as the templates say; those
    problems go, and check-config moves on to the routes."""
    import shutil
    bench = tmp_path / "filled"
    shutil.copytree(imported, bench)
    with (bench / "bench.toml").open("a", encoding="utf-8") as fh:
        for p in "ABCDEF":
            fh.write(f'\n[[pumps]]\nname = "{p}0.0"\nnode = "{p}0.0"\nsyringe = "10_mL"\n')
        fh.write('\n[[instruments]]\nname = "densiVisco"\ninlet = "densioViscoIN"\n'
                 'outlet = "densioViscoOUT"\n')
    result = runner.invoke(app, ["check-config", str(bench), "--json"])
    reasons = [p["reason"] for p in json.loads(result.stdout)["problems"]]
    assert not any(r.startswith(("no [[pumps]]", "no [[instruments]]")) for r in reasons)
    assert any(r.startswith("instrument 'densiVisco'") or r.startswith("no [densimeter]")
               for r in reasons)


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch PWNED')",
    "open('x').read()",
    "{'V1': {'V1.1': 0}} if True else 1",
    "[" * 200_000,
    "{'a': 1} + {}",
])
def test_the_dict_files_are_data_never_code(tmp_path: Path, text: str) -> None:
    path = tmp_path / "valvePositionDict.txt"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_literal(path)
    assert info.value.problems[0].file == "valvePositionDict.txt"
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_a_valve_dict_of_the_wrong_shape_is_located(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("nodes.csv", "edges.csv", "tubing.csv", "syringes.txt"):
        (src / name).write_bytes((LAYOUT_2022 / name).read_bytes())
    (src / "valvePositionDict.txt").write_text("{'V1': {'V1.1': 0},\n 'V2': {'V2.1': 'zero'}}\n")
    with pytest.raises(ConfigError) as info:
        import_legacy(src, tmp_path / "out", first_wins=True)
    problem = info.value.problems[0]
    assert (problem.file, problem.row) == ("valvePositionDict.txt", 2)
    assert "valve 'V2': expected {port node: position index" in problem.reason
    assert not (tmp_path / "out").exists()


def _source(tmp_path: Path, valves: str) -> Path:
    src = tmp_path / "src"
    src.mkdir(parents=True)
    for name in ("nodes.csv", "edges.csv", "tubing.csv", "syringes.txt"):
        (src / name).write_bytes((LAYOUT_2022 / name).read_bytes())
    (src / "valvePositionDict.txt").write_text(valves)
    return src


def test_valves_missing_from_the_dict_are_gaps_not_plain_tubes(tmp_path: Path) -> None:
    """Without a valve entry, V1's channels would be plain tubes and V1.1 → V1.0 → V1.5 a
    'route': the importer names every valve-like hub it has no valve for."""
    valves = (LAYOUT_2022 / "valvePositionDict.txt").read_text()
    text = valves.replace("'V1': {'V1.1': 0, 'V1.2': 1, 'V1.3': 2, 'V1.4': 3, 'V1.5': 4, "
                          "'V1.6': 5, 'V1.7': 6, 'V1.8': 7, 'V1.9': 8, 'V1.10': 9}, ", "")
    assert text != valves
    result = import_legacy(_source(tmp_path, text), tmp_path / "out", first_wins=True)
    gaps = [g for g in result.gaps if g.startswith("[[valves]] for V1:")]
    assert len(gaps) == 1 and "node V1.0 is joined by fixed edges to V1.1, V1.10" in gaps[0]
    empty = import_legacy(_source(tmp_path / "e", "{}"), tmp_path / "out2", first_wins=True)
    assert sum(g.startswith("[[valves]] for ") for g in empty.gaps) == 10


def test_an_unclear_common_port_is_a_gap_and_the_rest_imports(tmp_path: Path) -> None:
    text = "{'Av': {'Av.0': 0, 'Av.1': 1},\n \"Qv\": {\"V1.1\": 0, \"V1.2\": 1}}"
    # V1.1 and V1.2 are both joined to V1.0 and (through the valve's own hub) nothing else
    result = import_legacy(_source(tmp_path, text), tmp_path / "out", first_wins=True)
    assert [n.text.split(":")[0] for n in result.notes if n.file == "valvePositionDict.txt"] == [
        "valve 'Av'", "valve 'Qv'"]
    assert [n.line for n in result.notes if n.file == "valvePositionDict.txt"] == [1, 2]


def test_a_port_that_is_not_a_node_is_named_with_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        import_legacy(_source(tmp_path, "{'Av': {'Av.0': 0, 'Avv.1': 1}}"), tmp_path / "out",
                      first_wins=True)
    assert info.value.problems[0].reason.startswith(
        "valve 'Av': port 'Avv.1' is not a node of nodes.csv (did you mean 'Av.1'")
    with pytest.raises(ConfigError, match="two ports share one position index"):
        import_legacy(_source(tmp_path / "d", "{'Av': {'Av.0': 0, 'Av.1': 0}}"), tmp_path / "o",
                      first_wins=True)


def test_an_output_folder_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("operator's file")
    with pytest.raises(ConfigError, match="not empty"):
        import_legacy(LAYOUT_2022, out, first_wins=True)
    assert (out / "keep.txt").read_text() == "operator's file"
