"""Issue 15, criteria 1-2: one results table (``asab results``, ``summary.csv`` of every run
and of the tenant folder) and the plots, on a real demo run of the simulated 2023 bench."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys

import pytest
from conftest import HIU_2023
from typer.testing import CliRunner

from asab.cli.main import app
from asab.results.plots import write_plots
from asab.results.provenance import bench_provenance
from asab.results.table import ResultsError, collect, write_parquet

runner = CliRunner()

INCHI = {"LiPF6": "AXPLOJNSKRXQPA-UHFFFAOYSA-N", "EC": "KMTRUDSVKNLOMY-UHFFFAOYSA-N",
         "EMC": "JBTWLSYIZRCDFO-UHFFFAOYSA-N"}  # hardware_configs/hiu_2023/chemicals.csv


@pytest.fixture(scope="module")
def run_dir(demo_run_dir):
    """The session's demo run (tests/conftest.py; copied before any test changes it)."""
    return demo_run_dir


def records(run_dir):
    return {p.name: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((run_dir / "records").glob("*.json"))}


def read_csv(path):
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def test_run_writes_summary_csv_one_row_per_job_failed_and_rejected_empty(run_dir):
    header, rows = read_csv(run_dir / "summary.csv")
    recs = records(run_dir)
    assert [r["record"] for r in rows] == [f"records/{n}" for n in recs]
    for name, key in INCHI.items():
        assert f"x_requested {name} ({key}) [mol/mol]" in header
        assert f"x_planned {name} ({key}) [mol/mol]" in header
    assert {"density_mean [g/cm3]", "density_sd [g/cm3]", "viscosity_mean [mPa*s]",
            "temperature [K]", "density_rep3 [g/cm3]", "status", "reason",
            "software_version", "bench"} <= set(header)
    by_job = {r["job_id"]: r for r in rows}
    for rec in recs.values():
        row = by_job[rec["job_id"]]
        assert row["status"] == rec["status"] and row["request_id"] == rec["request_id"]
        m = rec["measurement"]
        if rec["status"] != "succeeded":
            assert m is None and row["reason"]
            measured = [k for k in header if k.startswith(("density", "viscosity", "temperature ["))]
            assert all(row[k] == "" for k in measured), row  # empty, never 0
            continue
        assert float(row["density_mean [g/cm3]"]) == m["density"]["mean"]
        assert float(row["viscosity_sd [mPa*s]"]) == m["viscosity"]["stdev"]
        assert int(row["density_n_valid"]) == m["density"]["n_valid"]
        assert [float(row[f"density_rep{i} [g/cm3]"]) for i in (1, 2, 3)] == m["density"]["values"]
        assert float(row["temperature [K]"]) == m["temperature"]
        for name, x in rec["requested"].items():
            assert float(row[f"x_requested {name} ({INCHI[name]}) [mol/mol]"]) == x
        for name, x in rec["composition_predicted"].items():
            assert float(row[f"x_predicted {name} ({INCHI[name]}) [mol/mol]"]) == x
    rejected = by_job["job004"]  # not makeable: the closest makeable is a row value
    assert float(rejected[f"x_closest EC ({INCHI['EC']}) [mol/mol]"]) == pytest.approx(0.51, abs=0.01)


def test_summary_json_names_the_bench_config_and_its_hash(run_dir):
    bench = json.loads((run_dir / "summary.json").read_text())["bench_config"]
    assert bench["path"] == str((HIU_2023 / "bench.toml").resolve())
    names = sorted(p.name for p in HIU_2023.iterdir() if p.is_file())
    assert [f["name"] for f in bench["files"]] == names
    lines = "".join(f"{hashlib.sha256((HIU_2023 / n).read_bytes()).hexdigest()}  {n}\n"
                    for n in names)
    assert bench["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert bench == bench_provenance(HIU_2023, name="hiu_2023")


def test_records_keep_raw_paths_relative_to_the_run_folder(run_dir):
    measured = [r for r in records(run_dir).values() if r["measurement"]]
    assert len(measured) == 6
    for rec in measured:
        raw = rec["measurement"]["raw_file"]
        assert raw.startswith("raw/") and (run_dir / raw).is_file()
        assert (run_dir / raw).read_bytes().decode() == rec["measurement"]["raw_text"]
    assert str(run_dir) not in "".join((run_dir / "records" / n).read_text()
                                       for n in records(run_dir))


def test_results_command_json_csv_and_several_folders(run_dir, tmp_path):
    copy = tmp_path / "again"
    shutil.copytree(run_dir, copy)
    res = runner.invoke(app, ["results", str(run_dir), str(copy), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert len(data["rows"]) == 18 and data["chemicals"] == INCHI
    assert {r["source"] for r in data["rows"]} == {str(run_dir), str(copy)}
    assert all(r["density_mean [g/cm3]"] is None for r in data["rows"] if r["status"] != "succeeded")
    out = tmp_path / "all.csv"
    res = runner.invoke(app, ["results", str(run_dir), "--csv", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == (run_dir / "summary.csv").read_bytes()  # the same rows


def test_results_prints_a_table_without_an_output_option(run_dir):
    res = runner.invoke(app, ["results", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "job001" in res.output and "succeeded" in res.output and "1.16" in res.output
    assert "job004: composition not makeable" in " ".join(res.output.split())


def test_parquet_is_typed_with_nulls(run_dir, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")  # the results extra, also in the test extra
    path = tmp_path / "r.parquet"
    res = runner.invoke(app, ["results", str(run_dir), "--parquet", str(path)])
    assert res.exit_code == 0, res.output
    t = pq.read_table(path).to_pylist()
    assert len(t) == 9
    assert str(pq.read_schema(path).field("density_mean [g/cm3]").type) == "double"
    assert [r["density_mean [g/cm3]"] is None for r in t] == [r["status"] != "succeeded" for r in t]


def test_parquet_without_pyarrow_says_how_to_install(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow → ImportError
    with pytest.raises(ResultsError, match=r"asab-lab\[results\]"):
        write_parquet(collect([run_dir]), tmp_path / "r.parquet")


def test_bad_input_exit_1_names_the_folder_or_file_and_loses_nothing(run_dir, tmp_path):
    res = runner.invoke(app, ["results", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "no such folder" in res.output
    empty = tmp_path / "state"
    empty.mkdir()
    (empty / "ledger.json").write_text("{}")
    res = runner.invoke(app, ["results", str(empty)])
    assert res.exit_code == 1 and "no job records" in res.output and "ledger" in res.output
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    bad = broken / "records" / "003_job003.json"
    bad.write_text('{"job_id": "job003", "status": "succeeded"')  # cut short
    res = runner.invoke(app, ["results", str(broken), "--csv", str(tmp_path / "x.csv")])
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "003_job003.json" in text and "unreadable" in text
    assert not (tmp_path / "x.csv").exists()
    assert bad.read_text() == '{"job_id": "job003", "status": "succeeded"'  # untouched
    bad.write_text('{"job_id": "job003"}')  # JSON, but no job record
    res = runner.invoke(app, ["results", str(broken)])
    assert res.exit_code == 1 and "not a job record" in " ".join(res.output.split())


def test_plots_in_the_run_folder_and_renders_are_byte_identical(run_dir, tmp_path, bench_config):
    names = {p.name for p in (run_dir / "plots").iterdir()}
    assert names == {f"{s}.{e}" for s in ("density", "viscosity", "ternary") for e in ("png", "svg")}
    table = collect([run_dir])
    a = write_plots(table, tmp_path / "a", config=bench_config)
    b = write_plots(table, tmp_path / "b", config=bench_config)
    assert a.notes == [] and len(a.files) == 6
    for fa, fb in zip(a.files, b.files):
        assert fa.read_bytes() == fb.read_bytes(), fa.name
        assert fa.read_bytes() == (run_dir / "plots" / fa.name).read_bytes(), fa.name
    svg = (tmp_path / "a" / "density.svg").read_text()
    assert "<dc:date>" not in svg and "asab" in svg
    assert "mol mol" in svg or "mole fraction" in svg
    res = runner.invoke(app, ["results", str(run_dir), "--plots", str(tmp_path / "c"), "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)["written"]) == 6


def test_ternary_only_for_three_components(run_dir, tmp_path):
    table = collect([run_dir])
    table.chemicals["DMC"] = "IEJIGPNLZYLLBP-UHFFFAOYSA-N"
    report = write_plots(table, tmp_path / "p")
    assert not (tmp_path / "p" / "ternary.png").exists()
    assert any("exactly 3 components" in n and "4" in n for n in report.notes)
    assert (tmp_path / "p" / "density.png").exists()


def test_ternary_frame_holds_the_points():
    from asab.results.plots import Ternary

    t = Ternary.around([(0.07, 0.29, 0.64), (0.12, 0.08, 0.80), (0.0, 0.5, 0.5)])
    assert t.mins == (0.0, 0.0, 0.45) and t.side == pytest.approx(0.55)  # 0.5 − 0.05 margin
    xs, ys = t.xy([(0.0, 0.55, 0.45), (0.0, 0.0, 1.0), (0.55, 0.0, 0.45)])  # the corners
    assert xs == pytest.approx([0, 1, 0.5]) and ys == pytest.approx([0, 0, 3 ** 0.5 / 2])


# --------------------------------------------------------------------------- the tenant
from test_tenant import GOOD, UNMAKEABLE, client, fake, journal, server_clock  # noqa: E402,F401


def test_tenant_folder_has_records_summary_csv_and_its_bench(sim_bench, client, journal, fake,  # noqa: F811
                                                             tmp_path):
    from asab.broker.tenant import Tenant, TenantSettings

    fake.add_request(GOOD)
    fake.add_request(UNMAKEABLE)
    state = tmp_path / "state"
    tenant = Tenant(sim_bench, client, journal, state, TenantSettings(poll_interval=0.01),
                    run_id="test-run", bench_file=HIU_2023)
    tenant.serve(until_idle=True, max_cycles=3)
    assert json.loads((state / "bench.json").read_text())["path"] == str(HIU_2023 / "bench.toml")
    header, rows = read_csv(state / "summary.csv")
    assert [r["status"] for r in rows] == ["succeeded"]  # the unmakeable one is never taken
    rec = json.loads((state / rows[0]["record"]).read_text())
    assert rec["measurement"]["raw_file"].startswith("raw/")
    assert (state / rec["measurement"]["raw_file"]).is_file()
    assert (state / "plots" / "ternary.svg").is_file()
    res = runner.invoke(app, ["results", str(state), "--json"])
    assert res.exit_code == 0 and len(json.loads(res.output)["rows"]) == 1


def test_record_view_agrees_with_the_job_record(run_dir):
    """The table reads records through RecordView (no job machinery imported): its fields
    are JobRecord's, optional ones with the same defaults (required ones are in every record
    written: records are dumped whole), and a real record reads the same both ways."""
    from asab.actions.job import JobRecord, Measurement
    from asab.results.table import MeasurementView, RecordView

    for view, model in ((RecordView, JobRecord), (MeasurementView, Measurement)):
        for name, f in view.model_fields.items():
            assert name in model.model_fields, name
            if not f.is_required():
                theirs = model.model_fields[name].get_default(call_default_factory=True)
                assert theirs == f.get_default(call_default_factory=True), name
    for data in records(run_dir).values():
        full, view = JobRecord.model_validate(data), RecordView.model_validate(data)
        for name in RecordView.model_fields:
            if name not in ("measurement", "gravimetric", "quality_flags"):
                assert getattr(view, name) == getattr(full, name), name
        if full.measurement:
            assert view.measurement.density.values == full.measurement.density.values
