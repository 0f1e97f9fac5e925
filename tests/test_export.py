"""Issue 15, criterion 3: ``asab export`` writes an RO-Crate of a real demo run whose JSON-LD
a JSON-LD processor (pyld) reads with RO-Crate's context served locally (never fetched)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from conftest import HIU_2023
from typer.testing import CliRunner

from asab.cli.main import app
from asab.results.export import IRI, LICENSE, MISSING

runner = CliRunner()
SDO = "http://schema.org/"


@pytest.fixture(scope="module")
def run_dir(demo_run_dir):
    """The session's demo run (tests/conftest.py; copied before any test changes it)."""
    return demo_run_dir


@pytest.fixture(scope="module")
def crate(run_dir):
    out = run_dir.parent / "crate"
    res = runner.invoke(app, ["export", str(run_dir), "--out", str(out), "--author", "A. Chemist"])
    assert res.exit_code == 0, res.output
    return out


def local_loader():
    """A pyld document loader serving RO-Crate's context from the rocrate package; any other
    URL fails the test (nothing is fetched)."""
    import importlib.resources

    ctx = json.loads(importlib.resources.files("rocrate").joinpath("data/ro-crate.jsonld")
                     .read_text("utf8"))

    def load(url, options=None):
        if url.startswith("https://w3id.org/ro/crate/") and url.endswith("/context"):
            return {"contentType": "application/ld+json", "contextUrl": None,
                    "documentUrl": url, "document": ctx}
        raise AssertionError(f"the test would fetch {url}")
    return load


def expanded(crate):
    """The crate's graph expanded by pyld: @id → node (with ``@base`` the crate folder)."""
    from pyld import jsonld

    doc = json.loads((crate / "ro-crate-metadata.json").read_text(encoding="utf-8"))
    nodes = jsonld.expand(doc, {"documentLoader": local_loader(), "base": "arcp://crate/"})
    return {n["@id"]: n for n in nodes}


def ids(node, prop):
    return [v["@id"] for v in node.get(SDO + prop, []) if "@id" in v]


def values(node, prop):
    return [v["@value"] for v in node.get(SDO + prop, []) if "@value" in v]


def test_crate_holds_records_raw_summary_plots_and_bench(run_dir, crate):
    for sub in ("records", "raw", "plots"):
        src = sorted(p.name for p in (run_dir / sub).iterdir())
        assert src and sorted(p.name for p in (crate / sub).iterdir()) == src
        for name in src:
            assert (crate / sub / name).read_bytes() == (run_dir / sub / name).read_bytes()
    assert (crate / "summary.csv").read_bytes() == (run_dir / "summary.csv").read_bytes()
    bench = sorted(p.name for p in HIU_2023.iterdir() if p.is_file())
    assert sorted(p.name for p in (crate / "bench").iterdir()) == bench


def test_jsonld_graph_license_parts_instruments_quantities(run_dir, crate):
    g = expanded(crate)
    root = g["arcp://crate/"]
    assert ids(root, "license") == [LICENSE]
    parts = set(ids(root, "hasPart"))
    for p in (run_dir / "records").glob("*.json"):
        assert f"arcp://crate/records/{p.name}" in parts
    for p in (run_dir / "raw").iterdir():
        assert f"arcp://crate/raw/{p.name}" in parts
    assert {"arcp://crate/summary.csv", "arcp://crate/plots/ternary.svg"} <= parts
    models = " ".join(m for n in g.values() if SDO + "IndividualProduct" in n.get("@type", [])
                      for m in values(n, "model"))
    for model in ("neMESYS", "Qmix", "Entris II", "DMA 4100 M", "Lovis 2000 ME"):
        assert model in models
    makers = {values(g[m], "name")[0] for n in g.values() for m in ids(n, "manufacturer")
              if m in g}
    assert {"CETONI", "Sartorius", "Anton Paar"} <= makers
    measured = {ids(g[v], "propertyID")[0] if ids(g[v], "propertyID") else values(g[v], "propertyID")[0]
                for v in ids(root, "variableMeasured")}
    assert {IRI["density"], IRI["viscosity"], IRI["mole_fraction"], IRI["temperature"]} <= measured
    assert [values(g[a], "name") for a in ids(root, "author")] == [["A. Chemist"]]
    action = g["arcp://crate/#run"]
    assert values(action, "startTime") and values(action, "endTime")
    software = g["arcp://crate/#asab"]
    import asab

    assert values(software, "softwareVersion") == [asab.__version__]


def test_stock_solutions_with_batch_and_manufacturer_and_bench_hash(run_dir, crate):
    g = expanded(crate)
    with (HIU_2023 / "stockSolutions.csv").open(encoding="utf-8") as fh:
        stocks = list(csv.DictReader(fh, delimiter=";"))
    for s in stocks:
        node = g[f"arcp://crate/#stock-{s['name']}"]
        assert values(node, "productID") == [s["batch"]]
        assert values(node, "manufacturer") == [s["manufacturer"]]
        assert values(node, "productionDate") == ["2023-08"]  # "08/2023" in the file: ISO 8601
    bench = json.loads((run_dir / "summary.json").read_text())["bench_config"]
    assert values(g["arcp://crate/bench/"], "identifier") == [f"sha256:{bench['sha256']}"]
    sums = {f["name"]: f["sha256"] for f in bench["files"]}
    for name, digest in sums.items():
        assert values(g[f"arcp://crate/bench/{name}"], "sha256") == [digest]


def test_missing_batch_is_reported_missing_not_invented(run_dir, tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(HIU_2023, bench)
    path = bench / "stockSolutions.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    fields = list(rows[0])
    for r in rows:
        r["batch"] = r["manufacturer"] = ""
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fields, delimiter=";")
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "crate"
    res = runner.invoke(app, ["export", str(run_dir), "--out", str(out), "--config", str(bench)])
    assert res.exit_code == 0, res.output
    g = expanded(out)
    node = g[f"arcp://crate/#stock-{rows[0]['name']}"]
    assert values(node, "productID") == [MISSING] and values(node, "manufacturer") == [MISSING]
    assert not ids(g["arcp://crate/"], "author")  # nobody claimed without --author


def test_export_bad_input_exit_1(run_dir, crate, tmp_path):
    res = runner.invoke(app, ["export", str(run_dir), "--out", str(crate)])
    assert res.exit_code == 1 and "not an empty folder" in " ".join(res.output.split())
    res = runner.invoke(app, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "c")])
    assert res.exit_code == 1 and "no such folder" in res.output
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    summary = json.loads((old / "summary.json").read_text())
    del summary["bench_config"]  # a run before issue 15
    (old / "summary.json").write_text(json.dumps(summary))
    res = runner.invoke(app, ["export", str(old), "--out", str(tmp_path / "c")])
    assert res.exit_code == 1 and "--config" in res.output
    res = runner.invoke(app, ["export", str(old), "--out", str(tmp_path / "c"),
                              "--config", str(HIU_2023), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["files"]["records"] == 9


def test_production_dates_become_iso_8601_or_are_left_out():
    from asab.results.export import iso_date

    assert iso_date("08/2023") == "2023-08" and iso_date("14.8.2023") == "2023-08-14"
    assert iso_date("2023-08-14") == "2023-08-14" and iso_date("2023") == "2023"
    assert iso_date("13/2023") is None and iso_date("summer 2023") is None and iso_date("") is None
