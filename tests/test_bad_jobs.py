"""One bad item in a jobs file is a rejected job with its reason; the run always finishes and
writes its summary. An unreadable file is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asab.cli.main import app
from asab.errors import RequestError
from asab.requests import item_problem, load_jobs, safe_copy
from conftest import HIU_2023

runner = CliRunner()
GOOD = json.loads((HIU_2023 / "demo_requests.json").read_text())[0]


def _with(path: list, value) -> dict:
    item = json.loads(json.dumps(GOOD))
    target = item
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return item


PARAMS = ["request", "parameters", "vibrating_tube_densimetry"]
BAD_ITEMS = {
    "methods an int": (_with(["request", "methods"], 5), "'methods' must be a list"),
    "parameters a list": (_with(["request", "parameters"], [1, 2]), "'parameters' an object"),
    "a lone surrogate": (_with(["request", "quantity"], "density\ud800"), "lone surrogate"),
    "a deeply nested parameter": (_with(PARAMS + ["extra"], json.loads("[" * 40 + "]" * 40)),
                                  "nested deeper than 32 levels"),
}
RAW_ITEMS = {  # written as JSON text: what json.dumps cannot make
    "a fraction of 1e400": (json.dumps(GOOD).replace('"fraction": 0.07', '"fraction": 1e400', 1),
                            "number out of range"),
    "a temperature of 1e400": (json.dumps(GOOD).replace('"temperature": 298.15',
                                                        '"temperature": 1e400', 1),
                               "number out of range"),
    "a 4301-digit integer": (json.dumps(GOOD).replace('"fraction": 0.07', '"fraction": ' + "9" * 4301, 1),
                             "number out of range"),
}


def test_every_bad_item_is_a_rejected_job_and_the_run_finishes(tmp_path: Path) -> None:
    texts = [json.dumps(item) for item, _ in BAD_ITEMS.values()]
    texts += [text for text, _ in RAW_ITEMS.values()]
    for text in texts[-3:]:
        assert text != json.dumps(GOOD)  # the replacements applied
    jobs = tmp_path / "jobs.json"
    jobs.write_text("[" + ",".join(texts + [json.dumps(GOOD)]) + "]", encoding="utf-8")
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--jobs", str(jobs), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["jobs"], summary["rejected"], summary["succeeded"]) == (len(texts) + 1, len(texts), 1)
    reasons = [row["reason"] for row in summary["rows"]]
    expected = [why for _, why in BAD_ITEMS.values()] + [why for _, why in RAW_ITEMS.values()]
    for reason, why in zip(reasons, expected):
        assert why in reason, (reason, why)
    assert len(list((out / "records").glob("*.json"))) == len(texts) + 1


@pytest.mark.parametrize("content, words", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("{not json", "cannot read jobs file"),
    ('{"a": 1}', "must hold a JSON list"),
])
def test_an_unreadable_jobs_file_is_one_clear_error(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(content)
    with pytest.raises(RequestError, match=words):
        load_jobs(path)


def test_safe_copy_is_storable() -> None:
    deep = json.loads("[" * 50 + "]" * 50)
    copy = safe_copy({"a": "x\ud800", "b": float("inf"), "c": deep})
    json.dumps(copy).encode("utf-8")
    assert copy["a"] == "x\\ud800" and copy["b"] == "inf"
    assert item_problem(copy) is None


def test_after_an_estop_the_run_runs_nothing_more(sim_bench, tmp_path: Path) -> None:
    from asab.runner import run_jobs
    sim_bench.emergency_stop("operator: leak")
    summary = run_jobs(sim_bench, [GOOD, GOOD], tmp_path / "run")
    assert (summary.rejected, summary.failed, summary.succeeded) == (2, 0, 0)
    assert all("not run: the emergency stop is latched (operator: leak)" in r["reason"]
               for r in summary.rows)
