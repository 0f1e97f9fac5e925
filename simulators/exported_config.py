"""The bench configuration a simulator process hands to the unchanged hardware drivers.

:func:`write_bench_config` copies a bench folder (``bench.toml`` and the layout files it names)
to a new folder and rewrites every device endpoint to where the simulators listen: serial
URLs to ``socket://HOST:PORT``, the densimeter's LIMS folders, and ``[cetoni] sdk_path`` to the
folder holding the ``qmixsdk`` shim. ``asab run --hardware --config <that folder>`` then drives
the simulated bench with the real drivers on the wall clock.

Time settings and speed. The simulator runs ``speed`` simulated seconds per wall-clock second,
while the hardware path waits on the wall clock. The written configuration therefore divides
the *cadence and wait bounds* by the speed (never below a floor, see :func:`shrink`):

* ``settings.poll_interval``: ``poll / speed``, at least :data:`MIN_POLL_INTERVAL` — the
  drivers poll at the same *simulated* cadence as on the bench instead of once per
  ``0.5 × speed`` simulated s;
* ``cetoni.calibration_timeout``, ``balance.stable_timeout``, ``densimeter.result_timeout``:
  ``t / speed``, at least :data:`MIN_WAIT_BOUND` (or ``t`` when that is smaller) — a stuck
  simulated device is detected in bench-equivalent time; the floor absorbs wall-clock jitter;
* unchanged: ``settings.pump_timeout`` (the planner also compares it with the *physical*
  duration volume ÷ flow of one move, ``asab.actions.fluidics``; shrinking it would refuse
  moves the bench can make, and as a wall-clock bound it only gets more generous) and every
  serial read ``timeout`` (a transport latency, not bench time).
"""

from __future__ import annotations

import copy
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from asab.config import BenchConfig

BENCH_FILE = "bench.toml"
EXTRA_FILES = ("demo_requests.json",)
"""Files copied along when present, so ``asab run`` finds its default jobs."""

MIN_POLL_INTERVAL = 0.01
"""s of wall clock; polling faster only loads the 2 shared cores (a design choice)."""

MIN_WAIT_BOUND = 5.0
"""s of wall clock below which a scaled wait bound is not shrunk (a design choice: thread
scheduling and the world's integration can lag a busy machine by a second or two)."""


@dataclass(frozen=True)
class Endpoints:
    """Where the simulators listen.

    Attributes:
        serial_urls: ``"balance"`` / ``"densimeter"`` → ``socket://HOST:PORT``.
        lims: ``(input folder, output folder)`` of a LIMS densimeter, or ``None``.
        sdk_path: folder holding the ``qmixsdk`` shim package.
    """

    serial_urls: Mapping[str, str] = field(default_factory=dict)
    lims: tuple[str, str] | None = None
    sdk_path: str = ""


def shrink(value: float, speed: float, floor: float) -> float:
    """``value / speed`` (for speed > 1), but never below ``min(value, floor)``."""
    scale = max(speed, 1.0)
    return max(value / scale, min(value, floor))


def bench_file(path: Path) -> Path:
    """``path`` itself if it is a file, else ``path / bench.toml``."""
    return path if path.is_file() else path / BENCH_FILE


def write_bench_config(source: Path, target: Path, config: BenchConfig, endpoints: Endpoints,
                       speed: float, note: str = "") -> Path:
    """Write the rewritten bench into ``target`` (created; files there are overwritten).

    Args:
        source: the bench folder (or its ``bench.toml``) the simulation was built from.
        target: folder to write ``bench.toml`` and the layout files into.
        config: ``source`` as loaded (canonical units; used for the scaled times).
        endpoints: where the simulators listen.
        speed: simulated s per wall-clock s.
        note: comment line put at the top of the written ``bench.toml``.

    Returns:
        The written ``bench.toml``.

    Raises:
        OSError: a file cannot be read or written. KeyError: a serial URL for a device the
            configuration does not have.
    """
    toml_path = bench_file(source)
    raw = tomllib.loads(toml_path.read_text(encoding="utf-8-sig"))
    doc = copy.deepcopy(raw)
    target.mkdir(parents=True, exist_ok=True)
    doc["layout"] = _copy_layout(raw.get("layout", {}), toml_path.parent, target)
    for extra in EXTRA_FILES:
        if (toml_path.parent / extra).is_file():
            shutil.copyfile(toml_path.parent / extra, target / extra)
    doc.setdefault("attribution", config.attribution)
    _rewrite_endpoints(doc, endpoints)
    _scale_times(doc, config, speed)
    out = target / BENCH_FILE
    header = "".join(f"# {line}\n" for line in note.splitlines()) if note else ""
    out.write_text(header + tomli_w.dumps(doc), encoding="utf-8")
    return out


def _copy_layout(layout: Mapping[str, str], src: Path, dst: Path) -> dict[str, str]:
    """Copy each layout file next to the new ``bench.toml``; return the new ``[layout]``."""
    out = {}
    for key, name in layout.items():
        path = (src / name).resolve()
        shutil.copyfile(path, dst / path.name)
        out[key] = path.name
    return out


def _rewrite_endpoints(doc: dict[str, Any], endpoints: Endpoints) -> None:
    for device, url in endpoints.serial_urls.items():
        section = doc[device]
        section.setdefault("serial", {})["url"] = url
    if endpoints.lims is not None:
        doc["densimeter"]["lims_input_dir"], doc["densimeter"]["lims_output_dir"] = endpoints.lims
    if endpoints.sdk_path:
        doc.setdefault("cetoni", {})["sdk_path"] = endpoints.sdk_path


def _scale_times(doc: dict[str, Any], config: BenchConfig, speed: float) -> None:
    """Scale poll interval and wait bounds to the simulator's speed (module docstring)."""
    settings = doc.setdefault("settings", {})
    settings["poll_interval"] = shrink(config.settings.poll_interval, speed, MIN_POLL_INTERVAL)
    doc.setdefault("cetoni", {})["calibration_timeout"] = shrink(
        config.cetoni.calibration_timeout, speed, MIN_WAIT_BOUND)
    if config.balance is not None:
        doc["balance"]["stable_timeout"] = shrink(config.balance.stable_timeout, speed,
                                                  MIN_WAIT_BOUND)
    if config.densimeter is not None:
        doc["densimeter"]["result_timeout"] = shrink(config.densimeter.result_timeout, speed,
                                                     MIN_WAIT_BOUND)
