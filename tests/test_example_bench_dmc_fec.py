"""The larger example bench hardware_configs/hiu_2023_dmc_fec: the 2023 bench with five more
stocks (DMC and the additive FEC), ten pumps and fourteen rotary valves.

It loads and validates, every stock's pump reaches the mixer on a line of its own, a
five-component request is made exactly, and its demo requests run on the simulated bench.
"""

from __future__ import annotations

import fnmatch
import json
import math
import tomllib

import pytest
from typer.testing import CliRunner

from asab.cli.main import app
from asab.config.checks import check_bench
from asab.config.loader import load_bench
from asab.tubing.graph import TubingGraph
from simulators.physics import model_density

from conftest import ROOT

BENCH = ROOT / "hardware_configs" / "hiu_2023_dmc_fec"
COMPONENTS = {"LiPF6", "EC", "EMC", "DMC", "FEC"}
FEC_KEY = "SBLRHMKNNHXPHG-UHFFFAOYSA-N"
FIVE = {"LiPF6": 0.08, "EC": 0.25, "EMC": 0.30, "DMC": 0.32, "FEC": 0.05}

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def config():
    return load_bench(BENCH)


def test_the_bench_loads_and_validates(config):
    assert config.name == "hiu_2023_dmc_fec"
    assert check_bench(config) == []
    res = invoke("check-config", str(BENCH), "--json")
    assert res.exit_code == 0 and json.loads(res.output)["ok"] is True
    assert "BIG-MAP/FINALES_ASAB_tenant" in config.attribution and "hypothetical" in config.attribution

    assert len(config.stocks) == 9
    names = {c.inchikey: c.name for c in config.chemicals}
    used = {names[key] for stock in config.stocks for key, part in stock.components.items()
            if part.mass > 0}
    assert used == COMPONENTS
    fec = next(c for c in config.chemicals if c.name == "FEC")
    assert fec.inchikey == FEC_KEY and fec.smiles == "C1C(OC(=O)O1)F"
    assert math.isclose(fec.molar_mass, 106.05, abs_tol=0.01) and fec.source


def test_every_stock_has_its_own_pump_reservoir_and_line_to_the_mixer(config):
    """Every stock flows into the mixer at the same time: its own pump, reservoir, valve and
    mixer inlet, as the four stocks of 2023 do (pump → Vn.0 → Vn.5 → M1.k → M1.0)."""
    graph = TubingGraph.from_config(config)
    pumps = {p.name: p for p in config.pumps}
    mixer = config.settings.mixer_outlet
    assert len({s.pump for s in config.stocks}) == len({s.reservoir for s in config.stocks}) == 9
    assert config.settings.solvent_pump not in {s.pump for s in config.stocks}

    lines = []
    for stock in config.stocks:
        node = pumps[stock.pump].node
        draw = graph.route(stock.reservoir, node)
        assert len(draw.valve_settings) == 1, stock.name
        push = graph.route(node, mixer)
        assert push.nodes[0] == node and push.nodes[-1] == mixer
        assert len(push.nodes) == 5 and push.nodes[-2].startswith("M1."), (stock.name, push.nodes)
        assert set(push.valve_settings) == set(draw.valve_settings), stock.name
        assert push.dead_volume < 0.1, (stock.name, push.dead_volume)
        lines.append(push)
    # the nine lines share nothing but the mixer outlet: no valve, no node, no inlet
    valves = [v for line in lines for v in line.valve_settings]
    assert len(valves) == len(set(valves)) == 9
    inner = [n for line in lines for n in line.nodes[:-1]]
    assert len(inner) == len(set(inner))


def test_a_five_component_request_is_made_exactly_and_deliverable(config):
    composition = ",".join(f"{k}={v}" for k, v in FIVE.items())
    res = invoke("formulate", composition, "--config", str(BENCH), "--json")
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output)
    assert plan["makeable"] and plan["deliverable"] and not plan["flagged"]
    keys = {c.name: c.inchikey for c in config.chemicals}
    for name, fraction in FIVE.items():
        assert abs(plan["achieved"][keys[name]] - fraction) <= 1e-9, name
    assert sum(plan["achieved"].values()) == pytest.approx(1.0, abs=1e-12)
    # the mix uses stocks that exist only on this bench, each within its syringe's drive limits
    assert {"FEC-EC-EMC", "1.5M-LiPF6-DMC"} <= set(plan["stock_volumes"])
    syringes = {s.name: s for s in config.syringes}
    pumps = {p.name: p for p in config.pumps}
    for stock, flow in plan["flows"].items():
        syringe = syringes[pumps[plan["pumps"][stock]].syringe]
        assert syringe.min_flow <= flow <= syringe.max_flow, stock


def test_limits_cover_the_five_components():
    res = invoke("limits", "--config", str(BENCH), "--json")
    assert res.exit_code == 0
    limits = json.loads(res.output)
    assert set(limits) == COMPONENTS
    assert limits["FEC"]["max"] == pytest.approx(0.19, abs=0.005)
    assert limits["DMC"]["max"] == 1.0


def test_the_demo_requests_run_on_the_simulated_bench(config, tmp_path):
    """`asab run` (virtual time, speed 0) on this bench's demo requests: six measured (five
    with DMC, three of them with FEC), one not makeable, one malformed, one at a temperature the
    bench does not offer."""
    out = tmp_path / "run"
    res = invoke("run", "--config", str(BENCH), "--jobs", str(BENCH / "demo_requests.json"),
                 "--out", str(out), "--state", str(tmp_path / "state"), "--speed", "0", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert (summary["jobs"], summary["succeeded"], summary["rejected"], summary["failed"]) == (9, 6, 3, 0)
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    measured = [r for r in records if r["status"] == "succeeded"]
    assert len(measured) == 6
    assert sum(1 for r in measured if r["requested"].get("FEC", 0) > 0) == 3
    assert sum(1 for r in measured if r["requested"].get("DMC", 0) > 0) == 5
    for rec in measured:
        m = rec["measurement"]
        assert m["density"]["n_valid"] == 3 and m["viscosity"]["n_valid"] == 3, rec["job_id"]
        expected = model_density(rec["requested"], m["temperature"], config)
        assert abs(m["density"]["mean"] - expected) < 0.002, rec["job_id"]
        assert abs(rec["weighing"]["relative_deviation"]) < 0.05, rec["job_id"]


def test_the_bench_ships_with_the_package():
    """hardware_configs/ is installed as asab.benches: the package data names every file of
    this folder, so a wheel carries it like the 2023 bench."""
    with (ROOT / "pyproject.toml").open("rb") as fh:
        patterns = tomllib.load(fh)["tool"]["setuptools"]["package-data"]["asab.benches"]
    files = [p.relative_to(BENCH.parent).as_posix() for p in BENCH.iterdir() if p.is_file()]
    assert {"hiu_2023_dmc_fec/bench.toml", "hiu_2023_dmc_fec/README.md",
            "hiu_2023_dmc_fec/demo_requests.json"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
