"""Fixtures' helpers for the server tests: a simulated bench behind every server app."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI

from asab.cli.wiring import simulated_bench
from asab.config.loader import load_bench
from asab.servers.common import ServerContext
from asab.servers.run import create_apps

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "hardware_configs" / "hiu_2023"
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAKEABLE = {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}
NOT_MAKEABLE = {"LiPF6": 0.5, "EC": 0.25, "EMC": 0.25}


@contextlib.contextmanager
def served_bench(speed: float = 0.0) -> Iterator[tuple[ServerContext, dict[str, FastAPI]]]:
    """A simulated hiu_2023 bench and the four apps on it; jobs cancelled on exit."""
    cfg = load_bench(CONFIG)
    with tempfile.TemporaryDirectory(prefix="asab-servers-") as tmp, \
            simulated_bench(cfg, Path(tmp), speed=speed) as bench:
        ctx, apps = create_apps(bench, TOKEN)
        try:
            yield ctx, apps
        finally:
            ctx.jobs.shutdown()
