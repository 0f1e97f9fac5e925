"""Which vial holds what: a small persistent record of vial occupancy.

The state is one JSON file (``{"vials": {vial node: VialOccupant}}``) written atomically
(temporary file + ``os.replace``) after every change, so a restarted tenant never fills a vial
that already holds an electrolyte. A vial is *claimed* before any liquid moves towards it and
stays occupied until an operator empties it and calls :meth:`VialRegistry.release`. A vial
still ``filling`` when its job's process died is settled by the restarted tenant: released if
``delivering`` was never set (nothing reached it), else marked ``failed``
(:mod:`asab.broker.tenant`).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from asab.config import BenchConfig
from asab.errors import ConfigError

log = logging.getLogger(__name__)

VIAL_STATE_FILE = "vials.json"
"""Default file name of the vial state inside a state folder."""


class VialOccupant(BaseModel):
    """What one vial holds.

    ``status``: ``filling`` (claimed, delivery under way or interrupted by a crash), ``filled``
    (the delivery finished) or ``failed`` (the delivery stopped part-way; content unknown).
    """

    model_config = ConfigDict(extra="forbid")
    vial: str
    request_id: str
    job_id: str
    status: Literal["filling", "filled", "failed"] = "filling"
    volume: float | None = Field(default=None, description="mL delivered (None: unknown)")
    delivering: bool = Field(default=False, description=(
        "the delivery into the vial has started (set before liquid is sent towards it); a "
        "vial left 'filling' by a stopped job without it is certainly empty"))
    composition: dict[str, float] = Field(default_factory=dict,
                                          description="chemical name → mole fraction made")
    time: str = Field(description="wall clock of the last change, ISO 8601 UTC")


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vials: dict[str, VialOccupant] = Field(default_factory=dict)


class VialRegistry:
    """Vial occupancy kept in the JSON file ``path`` (created on the first change).

    Args:
        path: the state file; its folder is created when needed.

    Raises:
        ConfigError: the file exists but is not a valid vial state (never silently reset: an
            unreadable state could hide an occupied vial).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._state = self._load()

    def _load(self) -> _State:
        if not self.path.exists():
            return _State()
        try:
            return _State.model_validate_json(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, ValidationError) as exc:
            raise ConfigError(f"vial state {self.path} is unreadable: {exc}") from exc

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(self._state.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, self.path)

    def occupied(self) -> dict[str, VialOccupant]:
        """Vial node → occupant, for every occupied vial (a copy)."""
        with self._lock:
            return {k: v.model_copy() for k, v in self._state.vials.items()}

    def free(self, config: BenchConfig) -> list[str]:
        """The configured vials (``settings.vial_nodes``, in order) that hold nothing."""
        with self._lock:
            return [v for v in config.settings.vial_nodes if v not in self._state.vials]

    def claim(self, occupant: VialOccupant) -> None:
        """Mark ``occupant.vial`` as occupied (written to disk before returning).

        Raises:
            ValueError: the vial is already occupied.
        """
        with self._lock:
            if occupant.vial in self._state.vials:
                raise ValueError(f"vial {occupant.vial} is already occupied")
            self._state.vials[occupant.vial] = occupant
            self._save()
        log.info("vial %s claimed for request %s", occupant.vial, occupant.request_id)

    def update(self, vial: str, **fields) -> VialOccupant:
        """Change fields of an occupied vial's entry and save.

        Raises:
            KeyError: the vial is not occupied.
        """
        with self._lock:
            current = self._state.vials[vial]
            updated = VialOccupant.model_validate({**current.model_dump(), **fields})
            self._state.vials[vial] = updated
            self._save()
            return updated

    def release(self, vial: str) -> None:
        """Mark ``vial`` empty again (after an operator emptied or replaced it). Idempotent."""
        with self._lock:
            if self._state.vials.pop(vial, None) is not None:
                self._save()
        log.info("vial %s released", vial)
