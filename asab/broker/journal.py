"""The tenant's local, append-only journal of what happened to each FINALES2 request.

The broker is not a reliable memory (no idempotency, reservations without owner, resolved
requests coming back, anyone can delete a result: shared docs finales2_api.md, quirks 3-6
and 9), so the tenant keeps its own: one SQLite table of events, never updated or deleted
(triggers refuse it), each append committed in its own transaction in WAL mode with
``synchronous=FULL``, so every append that returned survives a SIGKILL (and a power cut).

States and their payloads (JSON objects; keys marked * are required, any others are kept):

=============  ==================================================================
``seen``        ``{"request": RequestInfo as JSON}`` - first sight of a request
``rejected``    ``{"why"*: str}`` - not accepted (schema, not makeable, limits...)
``reserved``    ``{}`` - set to reserved on the broker
``running``     ``{}`` - wet work started
``measured``    ``{"result"*: Result as JSON}`` - the full result, written BEFORE posting
``posted``      ``{"result_uuid"*: str}`` - the broker stored it under this uuid
``failed``      ``{"why"*: str}`` - the job failed (counts towards the failure limit)
``given_back``  ``{"why": str}`` - set back to pending on the broker
``refused``     ``{"why"*: str}`` - the broker refused a post of the measured result (it is
                retried on later cycles up to a limit; the result stays in the journal)
``skipped``     ``{"why"*: str}`` - not taken (served before, too many failures...)
=============  ==================================================================

Concurrency: one writer process at a time (the tenant worker); any number of readers, in
other processes too (WAL). Within the writer process the object may be shared by threads
(a lock serialises use of the one connection).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from asab.errors import AsabError


class JournalState(StrEnum):
    """What happened to a request (see the module docstring for payloads)."""

    SEEN = "seen"
    REJECTED = "rejected"
    RESERVED = "reserved"
    RUNNING = "running"
    MEASURED = "measured"
    POSTED = "posted"
    FAILED = "failed"
    GIVEN_BACK = "given_back"
    SKIPPED = "skipped"
    REFUSED = "refused"


REQUIRED: dict[JournalState, tuple[str, ...]] = {
    JournalState.REJECTED: ("why",), JournalState.MEASURED: ("result",),
    JournalState.POSTED: ("result_uuid",), JournalState.FAILED: ("why",),
    JournalState.SKIPPED: ("why",), JournalState.REFUSED: ("why",),
}
"""Payload keys each state requires."""

SERVED = (JournalState.MEASURED, JournalState.POSTED)
"""A request that ever reached one of these states has been served: never serve it again."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    request_uuid TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_request ON events (request_uuid, id);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"""


class JournalError(AsabError):
    """The journal cannot be opened or an event is malformed."""


class Event(BaseModel):
    """One journal row. ``time`` in epoch s (UTC) from the tenant's clock."""

    model_config = ConfigDict(frozen=True)
    id: int
    time: float
    request_uuid: str
    state: JournalState
    payload: dict[str, Any]


class Journal:
    """Append-only event log of requests in an SQLite file.

    Args:
        path: the database file (created with its folder if missing).
        clock: epoch seconds for event times (injectable for tests).

    Raises:
        JournalError: the file cannot be opened as a journal.
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        if self.path.is_file() and self.path.stat().st_size == 0:  # never written by SQLite
            raise JournalError(
                f"journal {self.path} is an empty file (0 bytes), not a journal: it was lost or "
                "truncated. Restore it from a backup (the job records stay the authority for "
                "what was measured), or delete it to start a new journal")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            verdict = self._db.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {verdict}")
            for state, text in self._db.execute("SELECT state, payload FROM events"):
                JournalState(state)
                json.loads(text)
        except (OSError, sqlite3.Error, ValueError) as exc:
            with contextlib.suppress(Exception):
                self._db.close()
            raise self._damaged(exc) from None

    def _damaged(self, exc: BaseException) -> JournalError:
        return JournalError(
            f"journal {self.path} is damaged ({exc}); nothing was served from it. The job "
            "records in records/ remain the authority for what was measured: restore the "
            "journal from a backup, or move the state folder aside and start a new one "
            "(requests measured before will then be served again)")

    def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple]:
        """Rows of one query; a damaged database is a :class:`JournalError`."""
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (every append is already committed)."""
        with self._lock:
            self._db.close()

    def append(self, request_uuid: str, state: JournalState | str,
               payload: Mapping[str, Any] | None = None) -> Event:
        """Append one event in its own committed transaction; return it.

        Raises:
            JournalError: unknown state, a required payload key missing, or a payload that
                is not JSON (NaN included).
        """
        try:
            state = JournalState(state)
        except ValueError:
            raise JournalError(f"unknown journal state {state!r}") from None
        body = dict(payload or {})
        missing = [k for k in REQUIRED.get(state, ()) if k not in body]
        if missing:
            raise JournalError(f"{state.value} event for {request_uuid} lacks {missing}")
        try:
            text = json.dumps(body, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise JournalError(f"{state.value} payload is not JSON: {exc}") from None
        now = float(self._clock())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO events (time, request_uuid, state, payload) VALUES (?, ?, ?, ?)",
                    (now, request_uuid, state.value, text))
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise self._damaged(exc) from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Event(id=cur.lastrowid, time=now, request_uuid=request_uuid, state=state,
                     payload=body)

    def check_records(self, records_dir: Path) -> None:
        """Refuse a journal that does not know the requests the job records name.

        Every record in ``records_dir`` (``<job>.json`` with a ``request_id``) belongs to a
        request the journal saw (a tenant that died after the job and before journalling
        ``measured`` still has the request ``running``). A record whose request the journal
        has never seen means the journal was lost or replaced (e.g. an empty file).

        Raises:
            JournalError: naming the records and what to do.
        """
        known = set(self.current_states())
        unknown: list[str] = []
        for path in sorted(Path(records_dir).glob("*.json")):
            try:
                request_id = json.loads(path.read_text(encoding="utf-8")).get("request_id")
            except (OSError, ValueError, AttributeError):
                continue
            if request_id and request_id not in known:
                unknown.append(path.name)
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            raise JournalError(
                f"journal {self.path} does not know the requests of {len(unknown)} job "
                f"record(s) in {records_dir} ({shown}): it was lost or replaced. Not serving "
                "on it: restore the journal from a backup (the records stay the authority "
                "for what was measured), or move the state folder aside to start anew")

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Event]:
        rows = self._fetch(sql, args)
        try:
            return [Event(id=r[0], time=r[1], request_uuid=r[2], state=r[3],
                          payload=json.loads(r[4])) for r in rows]
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            raise self._damaged(exc) from None

    def history(self, request_uuid: str | None = None) -> list[Event]:
        """Every event in append order, of one request or of all."""
        cols = "SELECT id, time, request_uuid, state, payload FROM events"
        if request_uuid is None:
            return self._rows(f"{cols} ORDER BY id")
        return self._rows(f"{cols} WHERE request_uuid = ? ORDER BY id", (request_uuid,))

    def _latest(self) -> list[Event]:
        return self._rows(
            "SELECT id, time, request_uuid, state, payload FROM events WHERE id IN "
            "(SELECT MAX(id) FROM events GROUP BY request_uuid) ORDER BY id")

    def state(self, request_uuid: str) -> JournalState | None:
        """The current (latest) state of a request, or None if never journalled."""
        rows = self._fetch("SELECT state FROM events WHERE request_uuid = ? "
                           "ORDER BY id DESC LIMIT 1", (request_uuid,))
        return JournalState(rows[0][0]) if rows else None

    def current_states(self) -> dict[str, JournalState]:
        """request uuid → current state, for every journalled request."""
        return {e.request_uuid: e.state for e in self._latest()}

    def in_state(self, state: JournalState | str) -> list[str]:
        """Request uuids whose CURRENT state is ``state`` (in order of that event)."""
        state = JournalState(state)
        return [e.request_uuid for e in self._latest() if e.state is state]

    def ever(self, state: JournalState | str) -> set[str]:
        """Request uuids that were EVER in ``state``."""
        rows = self._fetch("SELECT DISTINCT request_uuid FROM events WHERE state = ?",
                           (JournalState(state).value,))
        return {r[0] for r in rows}

    def served(self) -> set[str]:
        """Requests ever ``measured`` or ``posted``: never serve these again (quirk 5)."""
        return self.ever(JournalState.MEASURED) | self.ever(JournalState.POSTED)

    def failure_count(self, request_uuid: str) -> int:
        """How many ``failed`` events a request has (quirk 6: stop after a limit)."""
        rows = self._fetch("SELECT COUNT(*) FROM events WHERE request_uuid = ? AND "
                           "state = 'failed'", (request_uuid,))
        return int(rows[0][0])

    def failure_counts(self) -> dict[str, int]:
        """request uuid → number of ``failed`` events (only requests that failed)."""
        rows = self._fetch("SELECT request_uuid, COUNT(*) FROM events WHERE "
                           "state = 'failed' GROUP BY request_uuid")
        return {r[0]: int(r[1]) for r in rows}

    def unposted(self) -> list[Event]:
        """The latest ``measured`` event of each request with no ``posted`` event after it.

        These results were made but may not have reached the broker: before posting one
        again, look the request's results up on the broker (quirk 3).
        """
        return self._rows(
            "SELECT id, time, request_uuid, state, payload FROM events AS m WHERE "
            "m.state = 'measured' AND m.id = (SELECT MAX(id) FROM events WHERE "
            "request_uuid = m.request_uuid AND state = 'measured') AND NOT EXISTS "
            "(SELECT 1 FROM events AS p WHERE p.request_uuid = m.request_uuid AND "
            "p.state = 'posted' AND p.id > m.id) ORDER BY m.id")
