"""Which bench folder to use: the one named, the one in the environment, or the bundled one.

The 2023 bench (``hardware_configs/hiu_2023`` in the repository) ships inside the package as
``asab.benches`` (see pyproject.toml), so an installed wheel runs from any folder. Commands
choose a bench in this order: the ``--config`` option, else the environment variable
:data:`CONFIG_ENV`, else :data:`BUNDLED_BENCH`.
"""

from __future__ import annotations

import enum
import importlib.resources
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from asab.errors import ConfigError, Problem

CONFIG_ENV = "ASAB_CONFIG"
"""Environment variable naming the bench folder (or its bench.toml) when --config is absent."""

BUNDLED_BENCH = "hiu_2023"
"""The bench shipped with asab: the real 2023 build, with its demo requests."""

BENCH_FILE = "bench.toml"
"""File name looked for in a bench folder."""


class BenchSource(enum.Enum):
    """Where the chosen bench came from (used to say how to choose another)."""

    OPTION = "--config"
    ENVIRONMENT = f"${CONFIG_ENV}"
    BUNDLED = "the bundled bench"


@dataclass(frozen=True)
class BenchChoice:
    """A chosen bench.

    Attributes:
        path: the folder holding ``bench.toml``, or the ``bench.toml`` file itself.
        source: how it was chosen.
        given_as: the command-line name of what gave it (``--config``, or ``PATH`` for a
            command that takes the bench as its argument).
    """

    path: Path
    source: BenchSource
    given_as: str = "--config"

    @property
    def folder(self) -> Path:
        """The bench folder (where ``demo_requests.json``, ``broker.toml`` … live)."""
        return self.path if is_dir(self.path) else self.path.parent

    @property
    def bench_file(self) -> Path:
        """The ``bench.toml`` this choice points at (it may not exist)."""
        return self.path / BENCH_FILE if is_dir(self.path) else self.path


def bundled_bench(name: str = BUNDLED_BENCH) -> Path:
    """The folder of a bench shipped inside the package.

    Args:
        name: the bench folder's name under ``hardware_configs/`` (installed as
            ``asab.benches``).

    Returns:
        The folder on disk (pip unpacks wheels, so package data is a real folder).

    Raises:
        ConfigError: the installation carries no such bench (a broken install).
    """
    folder = importlib.resources.files("asab.benches") / name
    if not isinstance(folder, Path) or not (folder / BENCH_FILE).is_file():
        raise ConfigError([Problem(BENCH_FILE, None, (
            f"the bundled bench {name!r} is missing from this installation ({folder}); "
            "reinstall asab, or choose a bench with --config DIR or $" + CONFIG_ENV))])
    return folder


def choose_bench(option: Path | None, environ: Mapping[str, str] | None = None, *,
                 given_as: str = "--config") -> BenchChoice:
    """The bench a command uses: ``--config``, else ``$ASAB_CONFIG``, else the bundled one.

    Args:
        option: the value of ``--config`` (``None`` when not given).
        environ: the environment (default ``os.environ``); an empty value counts as unset.
        given_as: how the command line calls ``option`` (for messages).

    Returns:
        The choice; its path is not checked here (see :func:`require_bench_file`).

    Raises:
        ConfigError: only when the bundled bench is needed and missing.
    """
    env = os.environ if environ is None else environ
    if option is not None:
        return BenchChoice(Path(option), BenchSource.OPTION, given_as)
    if env.get(CONFIG_ENV, "").strip():
        return BenchChoice(Path(env[CONFIG_ENV].strip()), BenchSource.ENVIRONMENT)
    return BenchChoice(bundled_bench(), BenchSource.BUNDLED)


def is_dir(path: Path) -> bool:
    """``path.is_dir()``, False for a path the system cannot even look up (too long, …)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def is_file(path: Path) -> bool:
    """``path.is_file()``, False for a path the system cannot even look up."""
    try:
        return path.is_file()
    except OSError:
        return False


def missing_bench(path: Path) -> str:
    """What is missing at ``path``: the folder itself, or the bench file in it."""
    if not is_dir(path) and not is_file(path):
        return f"no bench at {str(path)[:200]}: no such folder or file"
    return f"no bench file at {path / BENCH_FILE if is_dir(path) else path}"


def require_bench_file(choice: BenchChoice) -> Path:
    """The chosen ``bench.toml``, or an error that says how the bench was chosen and the fix.

    Raises:
        ConfigError: no ``bench.toml`` where the choice points.
    """
    candidate = choice.bench_file
    if is_file(candidate):
        return candidate
    how = {
        BenchSource.OPTION: f"given as {choice.given_as} {str(choice.path)[:200]}",
        BenchSource.ENVIRONMENT: f"given by ${CONFIG_ENV}={str(choice.path)[:200]}",
        BenchSource.BUNDLED: "the bundled bench",
    }[choice.source]
    reason = (
        f"{missing_bench(choice.path)} ({how}). A bench is a folder holding {BENCH_FILE} "
        f"(or that file itself): choose one with {choice.given_as} DIR, or set "
        f"${CONFIG_ENV}; without either the bundled {BUNDLED_BENCH} bench is used")
    raise ConfigError([Problem(BENCH_FILE, None, reason)])
