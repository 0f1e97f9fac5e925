"""The wheel carries everything a user needs: build it, install it into a new environment,
and run the README's commands from a folder that is not the repository.

The new environment gets asab only from the wheel; its dependencies are the ones of the
environment running the tests, reached through a plain path entry (a ``.pth`` line naming
that environment's site-packages). Path entries added that way are not site directories, so
the editable install of the repository there (its own ``.pth`` finder) is not active in the
new environment: ``import asab`` must find the wheel's copy, which the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _listed_packages() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return set(tomllib.load(fh)["tool"]["setuptools"]["packages"])


def test_every_package_is_listed_in_pyproject() -> None:
    """pyproject lists packages by name (the bundled benches live outside asab/): a new
    subpackage that is not listed would be missing from the wheel."""
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for top in ("asab", "simulators") for p in (ROOT / top).rglob("__init__.py")}
    assert found - _listed_packages() == set()
    assert "asab.benches" in _listed_packages()


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    """A new virtual environment with the freshly built wheel installed; returns its bin."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    # built from a copy without the checkout's build/ and *.egg-info: setuptools takes package
    # data listed in a stale egg-info too, which would hide a file missing from package-data
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", ".git", "runs", ".hypothesis", ".ruff_cache", "__pycache__",
        ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                    str(src)], check=True, timeout=300, capture_output=True)
    wheel = next(dist.glob("asab_lab-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=300, capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_test_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    return bindir


def _run(bindir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ASAB_CONFIG", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(bindir / "asab"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_wheel_runs_the_readme_commands_from_any_folder(wheel_env: Path, tmp_path: Path) -> None:
    python = wheel_env / "python"
    where = subprocess.run([str(python), "-c", "import asab, asab.benches; print(asab.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(wheel_env.parent) in where, where  # the wheel's copy, not the repository's

    run = _run(wheel_env, ["run", "--json", "--out", "demo"], tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert (summary["jobs"], summary["succeeded"], summary["rejected"]) == (9, 6, 3), summary
    assert (tmp_path / "demo" / "summary.json").is_file()

    for args in (["check-config"], ["limits"], ["route", "A0.0", "M1.0"],
                 ["formulate", "LiPF6=0.07,EC=0.29,EMC=0.64"], ["draw", "--out", "bench.svg"]):
        result = _run(wheel_env, args, tmp_path)
        assert result.returncode == 0, (args, result.stderr)
    assert (tmp_path / "bench.svg").stat().st_size > 1000


def test_a_missing_bench_says_how_to_choose_one(wheel_env: Path, tmp_path: Path) -> None:
    result = _run(wheel_env, ["route", "A0.0", "M1.0", "--config", "nowhere"], tmp_path)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "no bench at nowhere: no such folder or file (given as --config nowhere)" in message
    assert "--config DIR" in message and "$ASAB_CONFIG" in message


def test_the_wheel_carries_the_live_page(wheel_env: Path, tmp_path: Path) -> None:
    """The live page's HTML, script and style are package data: the installed wheel serves
    them (asab.servers.live reads them with importlib.resources)."""
    code = ("from asab.servers.live import _static, STATIC; import asab.servers.live as m; "
            "print(m.__file__); "
            "print(all(len(_static(n)) > 500 for n in ('live.html', *STATIC)))")
    out = subprocess.run([str(wheel_env / "python"), "-c", code], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    where, ok = out.stdout.split()
    assert str(wheel_env.parent) in where and ok == "True", out.stdout
