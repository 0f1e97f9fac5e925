"""End to end: the simulated bench in its own process on loopback (``asab simulate``),
the unchanged hardware path (``asab run --hardware``) in another, compared with the in-process
wiring on the same requests.

Deselect with ``-m "not e2e"``. Takes about 10–20 s of wall time on 2 busy cores.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from asab.cli.wiring import simulated_bench
from asab.requests import load_jobs
from asab.runner import run_jobs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]
HIU_2023 = ROOT / "hardware_configs" / "hiu_2023"
SPEED = 600.0
"""Simulated s per wall s: one measured job (~31 bench minutes) takes ~3 s of simulation."""
READY_TIMEOUT = 30.0
RUN_TIMEOUT = 150.0
DEMO_PICKS = (0, 3, 8)
"""demo_requests.json entries: makeable (measured), not makeable, unavailable temperature."""
RECORD_FIELDS_SUCCEEDED = ("measurement", "weighing", "routes", "pushes", "steps", "stock_drawn",
                           "achieved", "units", "software_version", "sample")


def _asab(*args: str) -> list[str]:
    return [sys.executable, "-c", "from asab.cli.main import main; main()", *args]


def _density_noise() -> float:
    """σ of one density reading (g/cm³) of the simulated DMA 4100 M."""
    data = tomllib.loads((ROOT / "simulators" / "data" / "anton_paar_dma4100m.toml").read_text())
    return float(data["noise"]["density"])


def _wait_ready(proc: subprocess.Popen, ready: Path, log: Path) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"simulator exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if ready.exists():
            return json.loads(ready.read_text())
        time.sleep(0.05)
    pytest.fail(f"no ready file within {READY_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((run_dir / "records").glob("*.json"))]


def test_loopback_bench_matches_the_in_process_bench(bench_config, tmp_path) -> None:
    demo = json.loads((HIU_2023 / "demo_requests.json").read_text())
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([demo[i] for i in DEMO_PICKS]))

    with simulated_bench(bench_config, tmp_path / "ref" / "instruments") as bench:
        reference = run_jobs(bench, load_jobs(jobs), tmp_path / "ref")

    work, log = tmp_path / "w", tmp_path / "simulator.log"
    ready_file = tmp_path / "ready.json"
    t0 = time.monotonic()
    with log.open("w") as err:
        proc = subprocess.Popen(
            _asab("simulate", "--config", str(HIU_2023), "--workdir", str(work),
                 "--speed", str(SPEED), "--seed", "0", "--ready-file", str(ready_file)),
            stdout=subprocess.DEVNULL, stderr=err)
        try:
            ready = _wait_ready(proc, ready_file, log)
            assert ready["pid"] == proc.pid and set(ready["ports"]) == {"qmixsdk", "balance"}
            run = subprocess.run(
                _asab("run", "--hardware", "--config", ready["config_dir"], "--jobs", str(jobs),
                      "--out", str(tmp_path / "net"), "--json"),
                capture_output=True, text=True, timeout=RUN_TIMEOUT,
                cwd=tmp_path)  # a fresh bench ledger (runs/state/<bench> under the cwd)
        finally:
            code = _stop(proc)
    wall = time.monotonic() - t0
    assert run.returncode == 0, run.stderr[-3000:]
    assert code == 0, log.read_text()[-3000:]
    assert not ready_file.exists()  # removed at a clean shutdown
    text = log.read_text()
    assert "balance: host attached" in text and "simulated bench stopped" in text
    assert any((work / "lims_out").iterdir())  # the densimeter answered through its folder

    summary = json.loads(run.stdout)
    assert (summary["succeeded"], summary["rejected"], summary["failed"]) == (1, 2, 0)
    tolerance = 4 * _density_noise()
    for net, ref in zip(summary["rows"], reference.rows, strict=True):
        assert net["status"] == ref["status"]
        assert net["reason"] == ref["reason"]
        if ref["status"] == "succeeded":
            assert abs(net["density"] - ref["density"]) <= tolerance
            assert net["viscosity"] == pytest.approx(ref["viscosity"], rel=1e-2)
            assert net["stock_drawn"] == pytest.approx(ref["stock_drawn"], rel=1e-3)
    for net, ref in zip(_records(tmp_path / "net"), _records(tmp_path / "ref"), strict=True):
        assert set(net) == set(ref)
        if ref["status"] == "succeeded":
            for field in RECORD_FIELDS_SUCCEEDED:
                assert net[field], field
            assert abs(net["weighing"]["relative_deviation"]) < 0.05
            assert [p["valve_settings"] for p in net["pushes"]] == \
                [p["valve_settings"] for p in ref["pushes"]]
    print(f"loopback run: {wall:.1f} s wall")  # shown with -s; see the report for numbers
