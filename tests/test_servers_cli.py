"""``asab serve --hardware`` (and the tenant's hardware bench) open the instruments with the
bench folder, so the pump calibration file next to bench.toml is applied. The instruments
are replaced by a stand-in bench (no vendor SDK here); the CLI wiring, the calibration file
and :func:`asab.actions.calibration.apply_calibration` are the real ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import asab.servers.run as servers_run
from asab.actions.calibration import PumpCalibration, save_calibration
from asab.cli import wiring
from asab.cli.main import app
from asab.config.loader import load_bench
from tests._servers_support import CONFIG, TOKEN


class StandInBench:
    """What hardware_bench touches on an opened bench: pumps, delivery factors, close."""

    def __init__(self, pumps: list[str]) -> None:
        self.pumps = dict.fromkeys(pumps)
        self.delivery_factors: dict[str, float] = {}
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def calibrated_bench(tmp_path, monkeypatch) -> tuple[Path, list[StandInBench]]:
    """A copy of the hiu_2023 bench folder with calibration.json (A0.0: 1.05); opening the
    hardware yields a :class:`StandInBench`, recorded in the returned list."""
    folder = tmp_path / "bench"
    shutil.copytree(CONFIG, folder)
    save_calibration(folder / "calibration.json", PumpCalibration(
        pump="A0.0", factor=1.05, uncertainty=0.002, liquid="EC", density=1.32,
        density_uncertainty=0.001, commanded=1.0, masses=[1.386, 1.386, 1.386],
        mass_uncertainty=0.0002, delivered=[1.05, 1.05, 1.05], readability=0.0001,
        date="2024-01-01T00:00:00+00:00"))
    opened: list[StandInBench] = []

    def open_bench(config, clock, **_):
        opened.append(StandInBench(sorted(p.name for p in config.pumps)))
        return opened[-1]
    monkeypatch.setattr(wiring, "open_bench", open_bench)
    return folder, opened


@pytest.mark.parametrize("as_file", [False, True], ids=["folder", "bench.toml"])
def test_serve_hardware_applies_the_calibration_file(calibrated_bench, monkeypatch, as_file):
    folder, opened = calibrated_bench
    served: dict[str, float] = {}
    monkeypatch.setattr(servers_run, "run_servers", lambda bench, *a, **k: served.update(
        bench.delivery_factors))
    monkeypatch.setenv("ASAB_SERVER_TOKEN", TOKEN)
    config = folder / "bench.toml" if as_file else folder
    result = CliRunner().invoke(app, ["serve", "--hardware", "--config", str(config),
                                      "--out", str(folder.parent / "serve")])
    assert result.exit_code == 0, result.output
    assert served == {"A0.0": 1.05}
    assert len(opened) == 1 and opened[0].closed


def test_tenant_hardware_bench_applies_the_calibration_file(calibrated_bench, tmp_path):
    from asab.cli.cmd_tenant import _bench

    folder, opened = calibrated_bench
    with _bench(load_bench(folder), tmp_path / "state", True, 0.0, folder) as bench:
        assert bench.delivery_factors == {"A0.0": 1.05}
    assert opened[0].closed
