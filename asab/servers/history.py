"""What ``asab serve`` keeps of its jobs: one record file per job and the instruments' raw
exports, in the serve folder (``asab serve --out``, default ``runs/serve``), laid out as an
``asab run`` folder is:

* ``records/NNNN_<kind>_<id8>.json`` — a :class:`ServeRecord`: the job as ``GET /jobs/{id}``
  shows it (kind, state, steps, result or error, wall-clock times) with the bench name and
  the software version; written when the job starts (state ``running``) and again, atomically,
  when it ends;
* ``raw/NNNN_<export file name>`` — a measurement's export, verbatim (the densimeter writes
  it into the simulated instruments' exchange folder, which is temporary).

A server started on the same folder lists the earlier jobs again (``GET /jobs``). A record
still ``running`` belongs to a server that stopped while the job ran (killed, crashed, the
machine lost power): it is rewritten as ``interrupted``, with the reason, and never resumed —
the bench ledger (``--state``) says what the bench holds now.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import asab
from asab.servers.jobs import JobInfo

log = logging.getLogger(__name__)

INTERRUPTED = {"type": "Interrupted", "message": (
    "the server stopped while the job ran (killed or crashed); the job was not resumed: "
    "check the bench ledger (GET /bench/status) before the next job")}
"""The error a job still running in its record is given when a server starts again."""


class ServeRecord(BaseModel):
    """One job of ``asab serve`` as kept on disk."""

    model_config = ConfigDict(extra="forbid")
    bench: str = Field(description="bench name from the configuration")
    software_version: str = Field(description="asab version that ran the job")
    job: JobInfo
    composition: dict[str, float] | None = Field(default=None, description=(
        "measure jobs: name → mole fraction the bench ledger predicted in the cell when the "
        "measurement started (carry-over included)"))


class JobHistory:
    """The records and raw exports of one serve folder (thread-safe).

    Args:
        folder: the serve folder; ``records/`` and ``raw/`` are made in it.
        bench: the bench name written into every record.

    Raises:
        OSError: the folder cannot be made.
        FolderInUse: another live server keeps its jobs in the folder (its running jobs
            would be marked interrupted and its record numbers shared).
    """

    def __init__(self, folder: Path, bench: str) -> None:
        self.folder = Path(folder).resolve()
        self.records = self.folder / "records"
        self.raw = self.folder / "raw"
        self.records.mkdir(parents=True, exist_ok=True)
        self.raw.mkdir(exist_ok=True)
        self._hold = _hold_folder(self.folder)
        self.bench = bench
        self._lock = threading.Lock()
        self._paths: dict[str, Path] = {}
        self._extra: dict[str, dict[str, Any]] = {}
        self._next = 1 + max((_index(p) for p in self.records.glob("*.json")), default=0)

    def load(self) -> list[JobInfo]:
        """Every job recorded in the folder, oldest first; a record still ``running`` is
        rewritten as ``interrupted`` (:data:`INTERRUPTED`). An unreadable record is skipped
        with a warning (it stays on disk)."""
        out: list[JobInfo] = []
        for path in sorted(self.records.glob("*.json"), key=_index):
            try:
                rec = ServeRecord.model_validate_json(path.read_bytes())
            except (OSError, ValidationError, ValueError) as exc:
                log.warning("serve record %s unreadable, skipped: %s", path, exc)
                continue
            job = rec.job
            job.record = str(path)
            job.raw = [str(self.folder / p) for p in job.raw]
            self._paths[job.id] = path
            if rec.composition is not None:
                self._extra[job.id] = {"composition": rec.composition}
            if job.state == "running":
                job.state, job.error = "interrupted", dict(INTERRUPTED)
                job.finished = job.finished or _mtime(path)
                self._write(path, rec.model_copy(update={"job": self._stored(job)}))
            out.append(job)
        return out

    def path_for(self, info: JobInfo) -> Path:
        """The record file of a new job (numbered after every earlier one)."""
        with self._lock:
            index, self._next = self._next, self._next + 1
            path = self.records / f"{index:04d}_{_safe(info.kind)}_{info.id[:8]}.json"
            self._paths[info.id] = path
        return path

    def note(self, job_id: str, **fields: Any) -> None:
        """Fields of :class:`ServeRecord` beyond the job (e.g. ``composition``) for the next
        :meth:`save` of ``job_id``."""
        with self._lock:
            self._extra.setdefault(job_id, {}).update(fields)

    def extra(self, job_id: str) -> dict[str, Any]:
        """What :meth:`note` added for ``job_id`` (empty when nothing)."""
        with self._lock:
            return dict(self._extra.get(job_id, {}))

    def save(self, info: JobInfo) -> None:
        """Write the job's record (atomically: a crash leaves the old or the new file)."""
        with self._lock:
            path = self._paths.get(info.id)
            extra = dict(self._extra.get(info.id, {}))
        if path is None:
            return
        rec = ServeRecord(bench=self.bench, software_version=asab.__version__,
                          job=self._stored(info), **extra)
        try:
            self._write(path, rec)
        except OSError as exc:  # the job's outcome stands; the operator sees the warning
            log.warning("could not write serve record %s: %s", path, exc)

    def keep_raw(self, job_id: str, name: str, text: str) -> Path:
        """Copy an instrument export into ``raw/`` (line ends verbatim); returns its path."""
        with self._lock:
            prefix = self._paths[job_id].name[:4] if job_id in self._paths else "0000"
        path = self.raw / f"{prefix}_{_safe(Path(name).name)}"
        with path.open("w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        return path

    def _stored(self, info: JobInfo) -> JobInfo:
        """``info`` as its record keeps it: the record and raw paths relative to the serve
        folder (the API gives them absolute), a measurement's ``raw_file`` the kept copy."""
        raw = [_relative(p, self.folder) for p in info.raw]
        result = info.result
        if result and "raw_file" in result and raw:
            result = {**result, "raw_file": raw[-1]}
        return info.model_copy(update={"record": _relative(info.record, self.folder)
                                       if info.record else None, "raw": raw, "result": result})

    def _write(self, path: Path, rec: ServeRecord) -> None:
        tmp = path.with_suffix(".tmp")
        with self._lock:
            tmp.write_text(rec.model_dump_json(indent=2), encoding="utf-8")
            tmp.replace(path)


class FolderInUse(OSError):
    """Another ``asab serve`` keeps its jobs in this folder."""


def _hold_folder(folder: Path):
    """An exclusive lock on ``folder/serve.lock`` for as long as the returned file is open
    (POSIX ``flock``; elsewhere nothing is held).

    Raises:
        FolderInUse: another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    fh = (folder / "serve.lock").open("a")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise FolderInUse(f"another asab serve keeps its jobs in {folder} (give this one "
                          "another --out)") from None
    return fh


def _relative(path: str, folder: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(folder).as_posix()
    except ValueError:
        return path


def _index(path: Path) -> int:
    head = path.name.split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:80] or "job"


def _mtime(path: Path) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat(timespec="milliseconds")
