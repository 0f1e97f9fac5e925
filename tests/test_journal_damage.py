"""A damaged or lost tenant journal is refused with a clear message and what to do; the
tenant never starts serving on a journal that disagrees with the job records."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from asab.broker.journal import Journal, JournalError, JournalState

ASAB = "from asab.cli.main import main; main()"


def _journal_with_events(path: Path, n: int = 400) -> None:
    with Journal(path) as jr:
        for i in range(n):
            jr.append(f"req-{i:04d}", JournalState.SEEN, {"request": {"pad": "x" * 200}})
            jr.append(f"req-{i:04d}", JournalState.REJECTED, {"why": "test " * 20})


def _checkpoint(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _asab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", ASAB, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.parametrize("damage", ["random bytes in the middle", "zeroed pages"])
def test_a_damaged_journal_is_refused_with_what_to_do(tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    path = state / "journal.sqlite"
    _journal_with_events(path)
    _checkpoint(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    if damage == "zeroed pages":
        data[4096:4096 * 4] = bytes(4096 * 3)
    else:
        data[middle:middle + 3000] = os.urandom(3000)
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError) as info:
        Journal(path)
    message = str(info.value)
    assert "is damaged" in message and "records/ remain the authority" in message
    result = _asab("journal", "--out", str(state), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "is damaged" in " ".join(result.stderr.split())


def test_an_empty_journal_beside_records_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "records").mkdir(parents=True)
    (state / "records" / "job001.json").write_text(json.dumps({"request_id": "req-0001"}))
    (state / "journal.sqlite").write_bytes(b"")
    with pytest.raises(JournalError, match="is an empty file"):
        Journal(state / "journal.sqlite")
    assert (state / "journal.sqlite").read_bytes() == b""  # left as found
    result = _asab("journal", "--out", str(state), cwd=tmp_path)
    assert result.returncode == 1 and "is an empty file" in " ".join(result.stderr.split())


def test_a_replaced_journal_beside_records_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "records").mkdir(parents=True)
    (state / "records" / "job001.json").write_text(json.dumps({"request_id": "req-0001"}))
    _journal_with_events(state / "journal.sqlite", n=0)  # a new, valid but empty journal
    with Journal(state / "journal.sqlite") as jr, pytest.raises(JournalError) as info:
        jr.check_records(state / "records")
    assert "does not know the requests of 1 job record(s)" in str(info.value)
    result = _asab("journal", "--out", str(state), cwd=tmp_path)
    assert result.returncode == 1 and "lost or replaced" in " ".join(result.stderr.split())


def test_a_journal_that_knows_its_records_opens(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "records").mkdir(parents=True)
    _journal_with_events(state / "journal.sqlite", n=3)
    (state / "records" / "job001.json").write_text(json.dumps({"request_id": "req-0001"}))
    with Journal(state / "journal.sqlite") as jr:
        jr.check_records(state / "records")
        assert jr.state("req-0001") is JournalState.REJECTED
