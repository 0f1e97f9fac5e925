"""Shared fixtures: the bundled 2023 bench and a simulated bench opened with the real drivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from asab.config import BenchConfig
from asab.config.loader import load_bench

ROOT = Path(__file__).resolve().parents[1]
HIU_2023 = ROOT / "hardware_configs" / "hiu_2023"


@pytest.fixture(scope="session")
def bench_config() -> BenchConfig:
    """The 2023 bench as shipped (hardware endpoints)."""
    return load_bench(HIU_2023)


@pytest.fixture
def sim_bench(bench_config, tmp_path):
    """A simulated 2023 bench on a virtual clock, opened through the real drivers."""
    from asab.cli.wiring import simulated_bench

    with simulated_bench(bench_config, tmp_path / "instruments") as bench:
        yield bench


@pytest.fixture(scope="session", autouse=True)
def _private_runtime_dir(tmp_path_factory):
    """Local e-stop sockets of test benches go to a folder of the test run, never beside a
    real bench's (asab.actions.local_estop)."""
    import os

    folder = tmp_path_factory.mktemp("runtime")
    folder.chmod(0o700)
    old = os.environ.get("ASAB_RUNTIME_DIR")
    os.environ["ASAB_RUNTIME_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("ASAB_RUNTIME_DIR", None)
    else:
        os.environ["ASAB_RUNTIME_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def _session_bench_state(tmp_path_factory):
    """$ASAB_STATE for what starts before a test's own (module fixtures): never the
    runs/state/ of the working directory (the repository)."""
    import os

    old = os.environ.get("ASAB_STATE")
    os.environ["ASAB_STATE"] = str(tmp_path_factory.mktemp("session-bench-state"))
    yield
    if old is None:
        os.environ.pop("ASAB_STATE", None)
    else:
        os.environ["ASAB_STATE"] = old


@pytest.fixture(autouse=True)
def _private_bench_state(_session_bench_state, tmp_path_factory, monkeypatch):
    """Every test's `asab run/serve/tenant/plan/bench` (in-process or a child process) keeps
    its bench ledger in a state folder of its own ($ASAB_STATE), never in runs/state/ of the
    working directory, shared across tests. Tests of the default unset it."""
    monkeypatch.setenv("ASAB_STATE", str(tmp_path_factory.mktemp("bench-state")))


@pytest.fixture(scope="session")
def demo_run_dir(tmp_path_factory) -> Path:
    """``asab run`` of the bundled demo (9 requests: 6 measured, 3 rejected), in-process,
    once per session: tests that change a run folder copy it first."""
    from typer.testing import CliRunner

    from asab.cli.main import app

    base = tmp_path_factory.mktemp("demo-run")
    out = base / "run"
    res = CliRunner().invoke(app, ["run", "--config", str(HIU_2023), "--out", str(out),
                                   "--state", str(base / "state"), "--json"])
    assert res.exit_code == 0, res.output
    return out
