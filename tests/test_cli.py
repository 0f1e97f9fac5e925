"""The operator's command line (typer's CliRunner, in-process)."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from asab.cli.main import app

from conftest import HIU_2023

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_lists_commands():
    out = invoke("--help").output
    for cmd in ("run", "check-config", "route", "formulate", "limits"):
        assert cmd in out


def test_check_config_summary_and_problems(tmp_path):
    ok = invoke("check-config", str(HIU_2023), "--json")
    assert ok.exit_code == 0
    summary = json.loads(ok.output)["summary"]
    assert json.dumps(summary)  # JSON-ready
    bad = tmp_path / "bench"
    shutil.copytree(HIU_2023, bad)
    tubing = bad / "tubing.csv"
    tubing.write_text(tubing.read_text(encoding="utf-8-sig").replace("V6.5;0282-NC-6;M1.6", "V6.5;0282-NC-6;M9.9"),
                      encoding="utf-8")
    res = invoke("check-config", str(bad), "--json")
    assert res.exit_code == 1
    problems = json.loads(res.output)["problems"]
    assert any("M9.9" in p["reason"] and p["file"].endswith("tubing.csv") for p in problems)


def test_route_json():
    res = invoke("route", "Reservoir6", "A0.0", "--json")
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["nodes"] == ["Reservoir6", "V6.1", "V6.0", "A0.0"]
    assert data["valve_settings"] == {"V6": 0}


def test_route_unknown_node_exit_1():
    res = invoke("route", "Reservoir6", "nowhere")
    assert res.exit_code == 1


def test_formulate_makeable_and_not():
    res = invoke("formulate", "LiPF6=0.07,EC=0.29,EMC=0.64", "--volume", "2.5", "--json")
    assert res.exit_code == 0
    plan = json.loads(res.output)
    assert plan["makeable"] and abs(sum(plan["stock_volumes"].values()) - 2.5) < 1e-9
    res = invoke("formulate", "LiPF6=0.06,EC=0.54,EMC=0.40", "--json")
    plan = json.loads(res.output)
    assert not plan["makeable"] and abs(plan["distance"] - 0.0435) < 5e-4
    assert res.exit_code == 1 and plan["policy"] == "reject"  # the bench's policy
    res = invoke("formulate", "LiPF6=0.06,EC=0.54,EMC=0.40", "--policy", "closest", "--json")
    assert res.exit_code == 0
    res = invoke("formulate", "LiPF6=0.06,EC=0.54,EMC=0.40", "--policy", "reject")
    assert res.exit_code == 1 and "closest makeable" in res.output
    res = invoke("formulate", "LiPF6=abc")
    assert res.exit_code == 1


def test_limits_json():
    res = invoke("limits", "--json")
    data = json.loads(res.output)
    assert abs(data["LiPF6"]["max"] - 0.143) < 1e-3
    assert data["EMC"]["max"] == 1.0


def test_run_demo(tmp_path):
    res = invoke("run", "--out", str(tmp_path / "run"), "--json")
    assert res.exit_code == 0
    summary = json.loads(res.output)
    assert summary["succeeded"] == 6 and summary["failed"] == 0


def test_check_config_on_the_2022_layout_names_all_16_duplicates():
    folder = str(HIU_2023.parent / "hiu_2022")
    res = invoke("check-config", folder, "--json")
    assert res.exit_code == 1
    problems = json.loads(res.output)["problems"]
    assert len([p for p in problems if "defined twice" in p["reason"]]) == 16
    res = invoke("check-config", folder, "--first-wins", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["layout_only"]


def test_run_refuses_a_used_run_folder_and_bad_speed(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "old.json").write_text("{}")
    res = invoke("run", "--out", str(used))
    assert res.exit_code == 1 and "neither empty nor an earlier run" in " ".join(res.output.split())
    res = invoke("run", "--out", str(tmp_path / "x"), "--speed", "-1")
    assert res.exit_code == 1 and "--speed" in res.output


def test_run_with_non_object_requests_records_each(tmp_path):
    jobs = tmp_path / "jobs.json"
    jobs.write_text("[1, true, null]")
    res = invoke("run", "--jobs", str(jobs), "--out", str(tmp_path / "r"), "--json")
    assert res.exit_code == 0
    assert json.loads(res.output)["rejected"] == 3
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b"[\xe9]")
    res = invoke("run", "--jobs", str(bad), "--out", str(tmp_path / "r2"))
    assert res.exit_code == 1 and "cannot read jobs file" in res.output
