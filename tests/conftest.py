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
