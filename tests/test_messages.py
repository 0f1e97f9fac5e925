"""Error messages say the fix: the closest known names, what exists, where a setting goes,
the command line's own flags. These tests pin the wording of one message of each kind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asab.broker.settings import BrokerSettings
from asab.cli.main import app
from asab.config.loader import load_bench, load_legacy_layout
from asab.errors import ConfigError
from asab.names import did_you_mean, known_names
from asab.tubing import TubingGraph, UnknownNodeError
from conftest import HIU_2023, ROOT

runner = CliRunner()


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_did_you_mean() -> None:
    assert did_you_mean("Reservoir7", ["Reservoir2", "Solvent", "waste_1"]) == " (did you mean 'Reservoir2'?)"
    assert did_you_mean("reservoir2", ["Reservoir2", "Reservoir3"]) == " (did you mean 'Reservoir2'?)"
    assert did_you_mean("xyz", ["Reservoir2"]) == ""
    assert known_names([]) == "none is configured"
    assert known_names([str(i) for i in range(20)], "pumps").endswith("(+8 more)")


def test_an_unknown_node_suggests_the_closest() -> None:
    graph = TubingGraph.from_config(load_bench(HIU_2023))
    with pytest.raises(UnknownNodeError) as info:
        graph.route("Resevoir2", "A0.0")
    assert str(info.value) == ("unknown tubing node(s): 'Resevoir2' "
                               "(did you mean 'Reservoir2' or 'Reservoir6' or 'Reservoir5'?)")
    result = runner.invoke(app, ["route", "a0.0", "M1.0"])
    assert result.exit_code == 1
    assert "unknown tubing node(s): 'a0.0' (did you mean 'A0.0'?)" in one_line(result.stderr)


def test_an_unknown_chemical_lists_the_chemicals() -> None:
    result = runner.invoke(app, ["formulate", "LiPF6=0.07,EC=0.29,EMCC=0.64"])
    assert result.exit_code == 1
    assert ("unknown chemical 'EMCC' (did you mean 'EMC' or 'EC'?); chemicals (name or InChIKey): "
            "'DEC', 'DMC', 'EC', 'EMC', 'LiPF6', 'PC', 'cyclohexane'") in one_line(result.stderr)


def test_a_missing_syringe_lists_the_syringes(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    shutil.copytree(HIU_2023, bench)
    toml = bench / "bench.toml"
    toml.write_text(toml.read_text().replace('syringe = "10_mL"\ndevice = "neMESYS_Low_Pressure_3_Pump"',
                                             'syringe = "10mL"\ndevice = "neMESYS_Low_Pressure_3_Pump"'))
    with pytest.raises(ConfigError) as info:
        load_bench(bench)
    reasons = [p.reason for p in info.value.problems]
    assert ("pump 'C0.0' without syringe: syringe '10mL' is not configured (did you mean '10_mL'?); "
            "[[syringes]]: '10_mL'") in reasons


def test_missing_broker_credentials_name_the_variable_and_the_key(tmp_path: Path) -> None:
    (tmp_path / "broker.toml").write_text('[broker]\nurl = "http://127.0.0.1:9"\npassword = "p"\n'
                                          'tenant_uuid = "t"\n')
    with pytest.raises(ConfigError) as info:
        BrokerSettings.load(tmp_path, env={})
    assert [str(p) for p in info.value.problems] == [
        'broker.toml: username: not given; set $ASAB_BROKER_USERNAME, or `username = "..."` '
        "under [broker] in broker.toml"]
    (tmp_path / "broker.toml").write_text('[broker]\nurl = "http://127.0.0.1:9"\nusername = "u"\n'
                                          'pasword = "p"\ntenant_uuid = "t"\n')
    with pytest.raises(ConfigError) as info:
        BrokerSettings.load(tmp_path, env={})
    reasons = [p.reason for p in info.value.problems]
    assert any(r.startswith("pasword: not a broker setting (did you mean 'password'?)") for r in reasons)


def test_the_tenant_command_prints_the_fix_unmangled(tmp_path: Path) -> None:
    """Through the console entry point: '[broker]' must not be eaten as terminal markup."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-c", "from asab.cli.main import main; main()",
                             "tenant", "--broker", "http://127.0.0.1:9", "--until-idle",
                             "--out", str(tmp_path / "state")],
                            capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    assert ('username: not given; set $ASAB_BROKER_USERNAME, or `username = "..."` under '
            "[broker] in broker.toml") in one_line(result.stderr)


def test_duplicate_labels_name_the_flag_not_a_python_keyword() -> None:
    _, problems = load_legacy_layout(ROOT / "hardware_configs" / "hiu_2022")
    duplicate = [p.reason for p in problems if "defined twice" in p.reason]
    assert len(duplicate) == 16
    assert all(r.endswith("give one of the rows a new label, or accept the first row with the "
                          "--first-wins option") for r in duplicate)
    assert not any("first_wins" in p.reason for p in problems)
