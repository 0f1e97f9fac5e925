"""Helpers for the tenant tests that run ``asab`` in a subprocess against the live fake broker
(tests/test_tenant_kill.py, tests/test_tenant_cli.py)."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fake_finales import TENANT_UUID, FakeFinales

LIPF6 = {"SMILES": "[Li+].F[P-](F)(F)(F)(F)F", "InChIKey": "AXPLOJNSKRXQPA-UHFFFAOYSA-N"}
EC = {"SMILES": "C1COC(=O)O1", "InChIKey": "KMTRUDSVKNLOMY-UHFFFAOYSA-N"}
EMC = {"SMILES": "CCOC(=O)OC", "InChIKey": "JBTWLSYIZRCDFO-UHFFFAOYSA-N"}
FLOW = ("electrolyte", "flow")

#: makeable compositions of the 2023 bench (LiPF6, EC, EMC mole fractions)
MAKEABLE = [(0.07, 0.29, 0.64), (0.05, 0.25, 0.70), (0.06, 0.27, 0.67)]
#: not makeable (EC too high for the stocks): rejected before any reservation
UNMAKEABLE = (0.06, 0.54, 0.40)

ASAB = [sys.executable, "-c", "from asab.cli.main import main; main()"]
"""How to start the ``asab`` console entry in a child process (same interpreter)."""


def formulation(x: tuple[float, float, float]) -> list[dict[str, Any]]:
    return [{"chemical": c, "fraction": f, "fraction_type": "molPerMol"}
            for c, f in zip((LIPF6, EC, EMC), x)]


def add_density(fake: FakeFinales, x: tuple[float, float, float]) -> str:
    return fake.add_request({"formulation": formulation(x), "temperature": 298.15})


def add_flow(fake: FakeFinales, x: tuple[float, float, float], volume: float) -> str:
    return fake.add_request({"electrolyte": {"formulation": formulation(x)}, "volume": volume},
                            quantity=FLOW[0], method=FLOW[1])


def add_random(fake: FakeFinales, rng: random.Random) -> str:
    """A makeable density (2 in 3) or electrolyte/flow request (0.5–1.5 mL)."""
    x = rng.choice(MAKEABLE)
    if rng.random() < 2 / 3:
        return add_density(fake, x)
    return add_flow(fake, x, round(rng.uniform(0.5, 1.5), 2))


def broker_env(url: str) -> dict[str, str]:
    """The environment of a child ``asab``: credentials of the fake's default user."""
    env = dict(os.environ, ASAB_BROKER_URL=url, ASAB_BROKER_USERNAME="asab",
               ASAB_BROKER_PASSWORD="asab-password", ASAB_TENANT_UUID=TENANT_UUID)
    env.pop("ASAB_CONFIG", None)
    return env


WARM = [sys.executable, "-c", (
    "import sys; from asab.cli.main import main; import asab.broker.tenant, asab.cli.wiring, "
    "asab.config.loader, simulators.bench; sys.stdin.readline(); main()")]
"""Like :data:`ASAB`, but the process imports asab, then waits for a line on stdin before it
runs the command: start it early, :func:`go` when needed (the imports overlap other work)."""


def start_asab(args: list[str], env: dict[str, str], log: Path, *,
               warm: bool = False) -> subprocess.Popen:
    """Start ``asab ARGS`` with stdout and stderr appended to ``log``; ``warm``: only import
    and wait for :func:`go`."""
    with log.open("ab") as fh:
        return subprocess.Popen([*(WARM if warm else ASAB), *args], env=env, stdout=fh,
                                stderr=subprocess.STDOUT,
                                stdin=subprocess.PIPE if warm else subprocess.DEVNULL)


def go(proc: subprocess.Popen) -> None:
    """Let a :func:`start_asab` ``warm`` process run its command."""
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()


def journal_events(state: Path) -> list[tuple[int, str, str, str]]:
    """``(id, request_uuid, state, payload)`` rows of the journal, read-only (a live tenant
    may be writing it); [] before the journal exists."""
    path = state / "journal.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return db.execute("SELECT id, request_uuid, state, payload FROM events "
                          "ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # created but the table not yet committed
        return []
    finally:
        db.close()
