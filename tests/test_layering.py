"""Architecture rules (architecture.md principle 1), checked on the source:

1. library code under ``asab/`` never imports ``simulators`` (only ``asab/cli`` wiring may);
2. no layer imports a higher one:
   0 errors/units/clock/config/schemas → 1 tubing/formulation/drivers/requests/ledger →
   1.5 plan (pure planner over the ledger) →
   2 actions, results (the results table, plots and export over the records) →
   3 runner/servers/broker → 4 cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "asab"

LAYERS = {
    "asab": 0, "asab.errors": 0, "asab.units": 0, "asab.clock": 0, "asab.config": 0,
    "asab.schemas": 0,
    "asab.tubing": 1, "asab.formulation": 1, "asab.drivers": 1, "asab.requests": 1,
    "asab.ledger": 1, "asab.plan": 1.5,
    "asab.actions": 2, "asab.results": 2,
    "asab.runner": 3, "asab.servers": 3, "asab.broker": 3,
    "asab.cli": 4,
}


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(f"module {module} has no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:  # `from asab import actions` imports asab.actions
                out.append(node.module or "")
                out.extend(f"{node.module}.{a.name}" for a in node.names)
                continue
            mod = module_name(path).split(".")
            package = mod if path.name == "__init__.py" else mod[:-1]
            base = package[: len(package) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            out.extend([target] if node.module else [f"{target}.{a.name}" for a in node.names])
    return out


SOURCES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_simulators_in_library(path: Path) -> None:
    mod = module_name(path)
    if mod.startswith("asab.cli"):
        return
    bad = [m for m in imports(path) if m == "simulators" or m.startswith("simulators.")]
    assert not bad, f"{mod} imports {bad}: library code must not import simulators"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_imports(path: Path) -> None:
    mod = module_name(path)
    own = layer(mod)
    upward = [m for m in imports(path) if m.startswith("asab") and layer(m) > own]
    assert not upward, f"{mod} (layer {own}) imports higher layers: {upward}"


def test_rules_can_fail(tmp_path: Path, monkeypatch) -> None:
    """The checker notices violations: direct, `from asab import <layer>`, relative, simulators."""
    bad = tmp_path / "x.py"
    bad.write_text("from asab.actions import job\nimport simulators.world\n")
    found = imports(bad)
    assert "simulators.world" in found and layer("asab.actions.job") == 2
    assert "asab.actions" in imports(_write(tmp_path, "y.py", "from asab import actions\n"))
    # a relative import resolved inside a scratch copy of the package layout (not the tree)
    root = tmp_path / "asab"
    probe = _write(root / "drivers", "probe.py", "from ..actions import job\nfrom . import base\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", root)
    assert imports(probe) == ["asab.actions", "asab.drivers.base"]
    assert layer("asab.actions") > layer(module_name(probe))


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name
