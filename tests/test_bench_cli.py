"""The bench ledger from the operator's side: ``asab plan`` (reads, never writes), ``asab bench
status/refill/empty/set-line``, ``--state`` on ``asab run`` (a second run continues the
ledger; a run that stops for a consumable exits 4 and carries on after the fix), ``asab
serve`` and ``asab tenant``, and the actions server's ``/bench/...`` endpoints."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from conftest import HIU_2023
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import asab.servers.run as servers_run
from asab.actions.vial_state import VialOccupant, VialRegistry
from asab.cli.main import app
from asab.plan import JobPlan
from asab.runner import RunSummary
from tests._servers_support import AUTH, TOKEN, served_bench

runner = CliRunner()
COMPOSITION = "LiPF6=0.07,EC=0.29,EMC=0.64"


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_line(text: str) -> str:
    return " ".join(text.split())


def ledger_file(state: Path) -> dict:
    return json.loads((state / "ledger.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def two_jobs(tmp_path_factory) -> Path:
    """The first two (makeable) requests of the demo."""
    requests = json.loads((HIU_2023 / "demo_requests.json").read_text(encoding="utf-8"))
    path = tmp_path_factory.mktemp("jobs") / "jobs.json"
    path.write_text(json.dumps(requests[:2]), encoding="utf-8")
    return path


# ---------------------------------------------------------------------- asab plan
def test_plan_prints_the_plan_and_writes_nothing(tmp_path):
    state = tmp_path / "state"
    human = invoke("plan", COMPOSITION, "--state", str(state))
    assert human.exit_code == 0, human.output
    for part in ("steps", "first portion to waste", "sample through cell", "pushes",
                 "predicted consumption", "balance load afterwards", "expected bench duration",
                 "Reservoir6 → A0.0"):
        assert part in human.output
    res = invoke("plan", COMPOSITION, "--state", str(state), "--json")
    assert res.exit_code == 0
    plan = JobPlan.model_validate_json(res.output)
    assert plan.kind == "density" and plan.bench == "hiu_2023" and plan.duration > 0
    assert plan.consumption.change["Solvent"] < 0 and plan.consumption.balance_load > 0
    vial = JobPlan.model_validate_json(invoke("plan", COMPOSITION, "--vial", "--volume", "2 mL",
                                              "--state", str(state), "--json").output)
    assert vial.kind == "vial" and vial.vial == "vial_1" and vial.volume_requested == 2.0
    assert vial.consumption.change["vial_1"] == pytest.approx(2.0, rel=0.01)
    assert not state.exists()  # planning never writes the ledger


def test_plan_refusals_exit_4_for_a_consumable_else_1(tmp_path):
    state = tmp_path / "state"
    assert invoke("bench", "refill", "Solvent", "1 mL", "--state", str(state)).exit_code == 0
    before = (state / "ledger.json").read_bytes()
    res = invoke("plan", COMPOSITION, "--state", str(state))
    assert res.exit_code == 4
    text = one_line(res.output)
    assert "cleaning solvent Solvent" in text and "asab bench refill Solvent" in text
    assert (state / "ledger.json").read_bytes() == before
    res = invoke("plan", "LiPF6=0.5,EC=0.29,EMC=0.21", "--state", str(state))
    assert res.exit_code == 1 and "closest makeable" in res.output
    assert invoke("plan", "LiPF6=abc", "--state", str(state)).exit_code == 1
    res = invoke("plan", COMPOSITION, "--vial", "--volume", "25 mL", "--state", str(state))
    assert res.exit_code == 1 and "vial_capacity" in one_line(res.output)
    assert runner.invoke(app, ["plan", COMPOSITION, "--volume", "2"]).exit_code == 2


# ---------------------------------------------------------------------- asab bench
def test_corrections_write_timestamped_events_with_the_note(tmp_path):
    state = tmp_path / "state"
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    res = invoke("bench", "refill", "Reservoir6", "20 mL", "--note", "lot 42",
                 "--state", str(state))
    assert res.exit_code == 0, res.output
    assert "Reservoir6: 46.68 mL 1.5M-LiPF6-EC-EMC → 20.00 mL 1.5M-LiPF6-EC-EMC" in res.output
    ledger = ledger_file(state)
    assert ledger["vessels"]["Reservoir6"]["content"] == {"1.5M-LiPF6-EC-EMC": 20.0}
    event = ledger["log"][-1]
    assert (event["change"], event["subject"], event["note"]) == ("refill", "Reservoir6", "lot 42")
    assert dt.datetime.fromisoformat(event["time"]) >= start

    res = invoke("bench", "empty", "waste_1", "--note", "bottle emptied", "--state", str(state),
                 "--json")
    assert res.exit_code == 0
    assert json.loads(res.output)["event"]["note"] == "bottle emptied"
    res = invoke("bench", "set-line", "0282-NC-6", "solvent", "--note", "hand flush",
                 "--state", str(state))
    assert res.exit_code == 0 and "0282-NC-6: 0.02 mL gas → 0.02 mL solvent" in res.output

    status = json.loads(invoke("bench", "status", "--state", str(state), "--json").output)
    assert status["exists"] and status["ledger"] == str(state / "ledger.json")
    vessels = {v["node"]: v for v in status["vessels"]}
    assert vessels["Reservoir6"]["volume"] == 20.0 and vessels["Reservoir6"]["stocks"] == [
        "1.5M-LiPF6-EC-EMC"]
    assert vessels["Solvent"]["capacity"] == 500.0 and vessels["waste_1"]["capacity"] == 1000.0
    assert status["balance"] == {"vessel": "waste_2", "load": 0.0, "capacity": 220.0}
    line = next(x for x in status["lines"] if x["segment"] == "0282-NC-6")
    assert line["main"] == "solvent"
    assert [(e["change"], e["note"]) for e in status["events"][-3:]] == [
        ("refill", "lot 42"), ("empty", "bottle emptied"), ("set-line", "hand flush")]
    table = invoke("bench", "status", "--state", str(state))
    assert table.exit_code == 0 and "vessels of hiu_2023" in table.output
    assert "lot 42" in table.output and "on the balance: 0.00 g of 220 g" in table.output
    every = invoke("bench", "status", "--state", str(state), "--lines")
    assert "0282-NC-6" in every.output


def test_bad_names_and_values_exit_1_and_write_nothing(tmp_path):
    state = tmp_path / "state"
    res = invoke("bench", "refill", "Reservoir66", "1", "--state", str(state))
    assert res.exit_code == 1 and "did you mean 'Reservoir6'" in one_line(res.output)
    res = invoke("bench", "empty", "wast_1", "--state", str(state))
    assert res.exit_code == 1 and "did you mean 'waste_1'" in one_line(res.output)
    res = invoke("bench", "set-line", "0282-NC-7", "gas", "--state", str(state))
    assert res.exit_code == 1 and "did you mean '0282-NC-6'" in one_line(res.output)
    for args in (["refill", "Reservoir6", "1e300 mL"], ["refill", "Reservoir6", "2**10 mL"],
                 ["refill", "Reservoir6", "--", "-1"], ["refill", "Reservoir6", "3 mL/min"],
                 ["refill", "waste_1", "1"], ["empty", "ambient"],
                 ["set-line", "0282-NC-6", "water"],
                 ["refill", "Reservoir6", "1", "--note", "two\nlines"]):
        command, rest = args[0], args[1:]
        assert invoke("bench", command, "--state", str(state), *rest).exit_code == 1, args
    assert not (state / "ledger.json").exists()  # nothing written


def test_empty_a_vial_releases_it_in_the_tenant_folder(tmp_path):
    state, tenant = tmp_path / "state", tmp_path / "tenant"
    VialRegistry(tenant / "vials.json").claim(VialOccupant(
        vial="vial_3", request_id="r1", job_id="j1", composition={}, time="2024-01-01T00:00Z"))
    res = invoke("bench", "empty", "vial_3", "--vials", str(tenant), "--state", str(state))
    assert res.exit_code == 0, res.output
    assert "vial_3 released in" in res.output and "request r1" in res.output
    assert VialRegistry(tenant / "vials.json").occupied() == {}
    res = invoke("bench", "empty", "waste_1", "--vials", str(tenant), "--state", str(state))
    assert res.exit_code == 1 and "not one of the bench's vials" in one_line(res.output)
    res = invoke("bench", "empty", "vial_4", "--vials", str(tmp_path / "none"),
                 "--state", str(state))
    assert res.exit_code == 1 and "no vial occupancy" in res.output


def test_a_ledger_of_another_bench_or_unreadable_is_one_line(tmp_path):
    other = tmp_path / "other"
    assert invoke("bench", "refill", "Solvent", "100", "--state", str(other)).exit_code == 0
    data = ledger_file(other)
    data["bench"] = "hiu_2099"
    (other / "ledger.json").write_text(json.dumps(data), encoding="utf-8")
    for cmd in (["bench", "status"], ["plan", COMPOSITION],
                ["run", "--out", str(tmp_path / "run")]):
        res = invoke(*cmd, "--state", str(other))
        assert res.exit_code == 1, cmd
        assert "belongs to bench 'hiu_2099', not 'hiu_2023'" in one_line(res.output)
    (other / "ledger.json").write_text("not json", encoding="utf-8")
    res = invoke("bench", "status", "--state", str(other))
    assert res.exit_code == 1 and "is unreadable" in one_line(res.output)
    assert not (tmp_path / "run").exists()


def test_state_is_not_a_run_or_tenant_folder(tmp_path):
    run = tmp_path / "run"
    (run / "records").mkdir(parents=True)
    res = invoke("bench", "status", "--state", str(run))
    assert res.exit_code == 1 and "give it as --out" in one_line(res.output)
    same = tmp_path / "same"
    res = invoke("run", "--out", str(same), "--state", str(same))
    assert res.exit_code == 1 and "must differ" in one_line(res.output)


def test_default_state_folder_is_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("ASAB_STATE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert invoke("bench", "empty", "waste_2").exit_code == 0
    assert (tmp_path / "runs" / "state" / "hiu_2023" / "ledger.json").is_file()


# ---------------------------------------------------------------------- asab run --state
def _levels(state: Path) -> dict[str, float]:
    return {node: sum(v for k, v in vessel["content"].items() if k != "gas")
            for node, vessel in ledger_file(state)["vessels"].items()}


def test_a_second_run_on_the_same_state_continues_the_ledger(tmp_path, two_jobs):
    state = tmp_path / "state"
    first = invoke("run", "--jobs", str(two_jobs), "--out", str(tmp_path / "r1"),
                   "--state", str(state))
    assert first.exit_code == 0, first.output
    assert f"bench ledger {state / 'ledger.json'} (new" in one_line(first.output)
    after_first = _levels(state)
    second = invoke("run", "--jobs", str(two_jobs), "--out", str(tmp_path / "r2"),
                    "--state", str(state), "--json")
    assert second.exit_code == 0
    assert RunSummary.model_validate_json(second.output).succeeded == 2
    after_second = _levels(state)
    assert after_second["Solvent"] < after_first["Solvent"] < 500.0
    assert after_second["Reservoir5"] < after_first["Reservoir5"]
    assert after_second["waste_1"] > after_first["waste_1"] > 0.0
    again = invoke("run", "--jobs", str(two_jobs), "--out", str(tmp_path / "r3"),
                   "--state", str(state))
    assert "(continued: the bench as last written" in one_line(again.output)


def test_a_run_waits_for_the_operator_with_exit_4_and_carries_on(tmp_path, two_jobs):
    state, out = tmp_path / "state", tmp_path / "run"
    assert invoke("bench", "refill", "Solvent", "1mL", "--state", str(state)).exit_code == 0
    cmd = ["run", "--jobs", str(two_jobs), "--out", str(out), "--state", str(state)]
    res = invoke(*cmd)
    assert res.exit_code == 4, res.output
    text = one_line(res.output)
    assert "The bench waits for the operator" in text and "asab bench refill Solvent" in text
    assert f"--out {out} --state {state}" in text  # the same command, to carry on
    summary = RunSummary.model_validate_json((out / "summary.json").read_bytes())
    assert summary.waiting and summary.succeeded == 0 and summary.failed == 0
    assert ledger_file(state)["waiting"]
    records = sorted((out / "records").glob("*.json"))
    assert len(records) == 2
    for path in records:
        rec = json.loads(path.read_text(encoding="utf-8"))
        assert rec["status"] == "rejected" and rec["consumables"][0]["node"] == "Solvent"
        assert not rec["liquid_moved"]

    assert invoke("bench", "refill", "Solvent", "500 mL", "--state", str(state)).exit_code == 0
    assert ledger_file(state)["waiting"] is None
    res = invoke(*cmd, "--json")
    assert res.exit_code == 0, res.output
    summary = RunSummary.model_validate_json(res.output)
    assert summary.succeeded == 2 and summary.waiting is None
    assert _levels(state)["Solvent"] < 500.0

    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"uuid": "x", "request": {}}]), encoding="utf-8")
    res = invoke("run", "--jobs", str(other), "--out", str(out), "--state", str(state))
    assert res.exit_code == 1 and "holds a run of other requests" in one_line(res.output)


# ---------------------------------------------------------------------- serve, tenant
def test_serve_opens_the_bench_on_its_state_folder(tmp_path, monkeypatch):
    state = tmp_path / "state"
    opened = []
    monkeypatch.setattr(servers_run, "run_servers",
                        lambda bench, *a, **k: opened.append(bench.ledger.state_dir))
    monkeypatch.setenv("ASAB_SERVER_TOKEN", "test-token-0123456789")
    res = runner.invoke(app, ["serve", "--speed", "0", "--state", str(state),
                              "--out", str(tmp_path / "serve")])
    assert res.exit_code == 0, res.output
    assert opened == [state] and "bench ledger" in res.stderr


def test_tenant_state_is_the_bench_state_and_out_the_tenant_folder(tmp_path, monkeypatch):
    for var, value in (("ASAB_BROKER_URL", "http://127.0.0.1:9"), ("ASAB_BROKER_USERNAME", "u"),
                       ("ASAB_BROKER_PASSWORD", "p"),
                       ("ASAB_TENANT_UUID", "00000000-0000-4000-8000-000000000000")):
        monkeypatch.setenv(var, value)
    tenant = tmp_path / "tenant"
    tenant.mkdir()
    (tenant / "journal.sqlite").write_bytes(b"")
    res = runner.invoke(app, ["tenant", "--until-idle", "--state", str(tenant)])
    assert res.exit_code == 1 and "give it as --out" in one_line(res.stderr)


# ---------------------------------------------------------------------- the actions server
@pytest.fixture
def actions():
    with served_bench() as (ctx, apps):
        yield ctx, TestClient(apps["actions"], headers=AUTH)


def test_server_shows_and_corrects_the_ledger(actions):
    ctx, client = actions
    status = client.get("/bench/status")
    assert status.status_code == 200 and status.json()["ledger"] is None
    assert TestClient(client.app).get("/bench/status").status_code == 401
    res = client.post("/bench/refill", json={"node": "Reservoir6", "volume": 20.0,
                                             "note": "lot 42"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["after"] == {"1.5M-LiPF6-EC-EMC": 20.0} and body["event"]["note"] == "lot 42"
    assert abs(ctx.bench.simulation.world.vessel_contents("Reservoir6").volume - 20.0) < 1e-9
    res = client.post("/bench/empty", json={"node": "waste_2", "note": "emptied"})
    assert res.status_code == 200 and res.json()["event"]["change"] == "empty"
    res = client.post("/bench/set-line", json={"segment": "0282-NC-6", "liquid": "EMC"})
    assert res.status_code == 200 and res.json()["after"] == {"EMC": pytest.approx(0.02, abs=5e-3)}
    full = client.get("/bench/status", params={"ledger": "true", "events": 3}).json()
    assert [e["change"] for e in full["events"]] == ["refill", "empty", "set-line"]
    assert full["ledger"]["vessels"]["Reservoir6"]["content"] == {"1.5M-LiPF6-EC-EMC": 20.0}
    assert next(v for v in full["vessels"] if v["node"] == "Reservoir6")["volume"] == 20.0


def test_server_refuses_bad_corrections_and_while_a_job_runs(actions):
    ctx, client = actions
    res = client.post("/bench/refill", json={"node": "Resrvoir6", "volume": 1.0})
    assert res.status_code == 422 and "did you mean 'Reservoir6'" in res.json()["error"]["message"]
    assert client.post("/bench/refill", json={"node": "waste_1", "volume": 1.0}).status_code == 422
    assert client.post("/bench/refill", json={"node": "Reservoir6", "volume": 1e6}).status_code == 422
    raw = client.post("/bench/refill", content=b'{"node": "Reservoir6", "volume": NaN}',
                      headers={"Content-Type": "application/json"})
    assert raw.status_code in (400, 422)
    assert client.post("/bench/empty", json={"node": "waste_1", "note": "a\x00b"}).status_code == 422
    assert client.post("/bench/empty", json={"node": "waste_1", "note": "x" * 501}).status_code == 422
    assert client.post("/bench/empty", json={"node": "waste_1", "extra": 1}).status_code == 422
    res = client.post("/bench/set-line", json={"segment": "0282-NC-7", "liquid": "gas"})
    assert res.status_code == 422 and "0282-NC-6" in res.json()["error"]["message"]
    with ctx.jobs.claim(["pumps"]):  # as a running job holds them
        res = client.post("/bench/empty", json={"node": "waste_1"})
        assert res.status_code == 409
    assert client.post("/bench/empty", json={"node": "waste_1"}).status_code == 200
    assert ctx.bench.ledger.current().log[-1].change == "empty"


def test_bench_state_folder_in_run_examples_is_separate(tmp_path):
    """A copy of the bench folder still finds its ledger by bench name (not by folder)."""
    bench = tmp_path / "bench"
    shutil.copytree(HIU_2023, bench)
    state = tmp_path / "state"
    assert invoke("bench", "refill", "Solvent", "250", "--state", str(state)).exit_code == 0
    res = invoke("bench", "status", "--config", str(bench), "--state", str(state), "--json")
    assert next(v for v in json.loads(res.output)["vessels"]
                if v["node"] == "Solvent")["volume"] == 250.0


def test_the_demo_carries_on_after_the_operator(tmp_path):
    """The demo holds a malformed request: carrying its run on must read that record back."""
    state, out = tmp_path / "state", tmp_path / "run"
    # 10 mL: less than the clean every job keeps for after it (a job's clean is left to the
    # next one, the run cleans at its end)
    assert invoke("bench", "refill", "Solvent", "10 mL", "--state", str(state)).exit_code == 0
    cmd = ["run", "--out", str(out), "--state", str(state), "--json"]
    first = RunSummary.model_validate_json(invoke(*cmd).output)
    assert first.succeeded == 0 and first.waiting
    assert invoke("bench", "refill", "Solvent", "500 mL", "--state", str(state)).exit_code == 0
    res = invoke(*cmd)
    assert res.exit_code == 0
    assert RunSummary.model_validate_json(res.output).succeeded == 6


def test_an_unreadable_ledger_is_a_503_that_says_what_to_do(bench_config, tmp_path):
    from asab.cli.wiring import simulated_bench
    from asab.servers.run import create_apps

    with simulated_bench(bench_config, tmp_path / "inst", ledger_dir=tmp_path / "state") as bench:
        ctx, apps = create_apps(bench, TOKEN)
        try:
            client = TestClient(apps["actions"], headers=AUTH)
            assert client.get("/bench/status").status_code == 200
            path = bench.ledger.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{not json", encoding="utf-8")
            res = client.get("/bench/status")
            assert res.status_code == 503, res.text
            message = res.json()["error"]["message"]
            assert str(path) in message and "unreadable" in message and "move it away" in message
        finally:
            ctx.jobs.shutdown()
