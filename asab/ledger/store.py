"""Where a bench's ledger lives: ``<state folder>/ledger.json``, written atomically
(temporary file, fsync, ``os.replace``) after every change and reloaded on start, so that
``asab run``, ``asab serve`` and ``asab tenant`` on the same state folder share it and a
restarted process continues from what the bench holds.

The default state folder is ``runs/state/<bench name>`` under the working directory
(:func:`default_state_dir`); commands take ``--state`` to choose another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from asab.config import BenchConfig
from asab.errors import ConfigError
from asab.ledger.model import LEDGER_VERSION, BenchLedger, initial_ledger, reconcile

try:
    import fcntl
except ImportError:  # Windows: one process per state folder (no advisory lock)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.json"
LOCK_FILE = "ledger.lock"
MAX_LEDGER_BYTES = 20_000_000
"""Bytes a ledger file may have (a 2023-bench ledger is about 60 kB)."""

T = TypeVar("T")


def default_state_dir(config: BenchConfig, cwd: Path | None = None) -> Path:
    """``runs/state/<bench name>`` under ``cwd`` (default the working directory)."""
    return (cwd or Path.cwd()) / "runs" / "state" / config.name


class LedgerStore:
    """The persisted ledger of one bench, shared by every process using ``state_dir``.

    Args:
        state_dir: the bench's state folder (created when needed); None keeps the ledger in
            memory only (tests, a bench opened without a state folder).
        config: the bench; a missing ledger file starts as :func:`initial_ledger`.

    Raises:
        ConfigError: the file exists but is unreadable, not a ledger, of another bench or of
            an unknown version (never silently reset: a reset would believe every reservoir
            full again).
    """

    def __init__(self, state_dir: str | Path | None, config: BenchConfig) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.path = self.state_dir / LEDGER_FILE if self.state_dir is not None else None
        self.config = config
        self._lock = threading.RLock()
        self._stamp: tuple[int, int] | None = None
        self._ledger = self._load()

    def _load(self) -> BenchLedger:
        if self.path is None or not self.path.exists():
            return initial_ledger(self.config)
        try:
            if self.path.stat().st_size > MAX_LEDGER_BYTES:
                raise ValueError(f"larger than {MAX_LEDGER_BYTES:,} bytes")
            ledger = BenchLedger.model_validate_json(self.path.read_bytes())
        except (OSError, ValueError, ValidationError) as exc:
            raise ConfigError(f"bench ledger {self.path} is unreadable: {exc}; move it away to "
                              "start from a full bench, or repair it") from exc
        if ledger.version != LEDGER_VERSION:
            raise ConfigError(f"bench ledger {self.path} has version {ledger.version}, this "
                              f"asab reads version {LEDGER_VERSION}")
        if ledger.bench != self.config.name:
            raise ConfigError(f"bench ledger {self.path} belongs to bench {ledger.bench!r}, not "
                              f"{self.config.name!r}; use another --state folder")
        changes = reconcile(ledger, self.config)
        if changes:
            log.warning("bench ledger %s brought in line with the configuration: %s",
                        self.path, "; ".join(changes))
        self._stamp = self._file_stamp()
        return ledger

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    @property
    def exists(self) -> bool:
        """Whether the ledger has been written to disk."""
        return self.path is not None and self.path.exists()

    def current(self) -> BenchLedger:
        """The ledger (reloaded first if another process wrote it since). Do not change the
        returned object: use :meth:`update`."""
        with self._lock:
            if self.path is not None and self._file_stamp() != self._stamp:
                self._ledger = self._load()
            return self._ledger

    def snapshot(self) -> BenchLedger:
        """A copy of :meth:`current` that may be changed (:meth:`BenchLedger.clone`)."""
        return self.current().clone()

    def update(self, change: Callable[[BenchLedger], T]) -> T:
        """Apply ``change`` to the ledger and write it to disk before returning its result.
        If ``change`` raises, nothing is written and the ledger is as before. Another
        process's write is read first, under an advisory lock on ``ledger.lock`` (POSIX), so
        two processes on one state folder do not lose each other's changes."""
        with self._lock, self._file_lock():
            working = self.current().clone()
            result = change(working)
            self._write(working)
            self._ledger = working
            return result

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        if self.state_dir is None or fcntl is None:
            yield
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / LOCK_FILE, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def save(self) -> None:
        """Write the ledger as it is (e.g. to create the file)."""
        with self._lock:
            self._write(self.current())

    def _write(self, ledger: BenchLedger) -> None:
        if self.path is None:  # an in-memory ledger (no state folder)
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = ledger.model_dump_json(indent=1).encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.state_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._stamp = self._file_stamp()
