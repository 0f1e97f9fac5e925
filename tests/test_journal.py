"""The tenant's append-only SQLite journal: queries, append-only rule, durability under SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asab.broker.journal import Journal, JournalError, JournalState

S = JournalState
RESULT = {"data": {"density": {"values": [1.21, 1.2101]}}, "quantity": "density"}


@pytest.fixture
def journal(tmp_path):
    ticks = iter(range(1000, 100000))
    with Journal(tmp_path / "journal" / "tenant.sqlite", clock=lambda: float(next(ticks))) as j:
        yield j


def test_life_of_a_request(journal):
    info = {"uuid": "r1", "status": "pending", "request": {"quantity": "density"}}
    journal.append("r1", S.SEEN, {"request": info})
    journal.append("r1", "reserved")
    journal.append("r1", S.RUNNING)
    journal.append("r1", S.MEASURED, {"result": RESULT})
    assert journal.unposted()[0].payload["result"] == RESULT
    ev = journal.append("r1", S.POSTED, {"result_uuid": "u1"})
    assert ev.state is S.POSTED and ev.time == 1004.0 and ev.payload == {"result_uuid": "u1"}
    journal.append("r2", S.SEEN)
    journal.append("r2", S.REJECTED, {"why": "not makeable"})
    assert journal.state("r1") is S.POSTED and journal.state("nope") is None
    assert journal.current_states() == {"r1": S.POSTED, "r2": S.REJECTED}
    assert journal.in_state(S.REJECTED) == ["r2"]
    assert journal.served() == {"r1"} and journal.unposted() == []
    history = journal.history("r1")
    assert [e.state for e in history] == [S.SEEN, S.RESERVED, S.RUNNING, S.MEASURED, S.POSTED]
    assert history[0].payload["request"] == info
    assert [e.id for e in journal.history()] == sorted(e.id for e in journal.history())
    assert len(journal.history()) == 7


def test_failures_counted_and_unposted_latest_measurement(journal):
    for _ in range(3):
        journal.append("a", S.RESERVED)
        journal.append("a", S.FAILED, {"why": "bubble in cell"})
        journal.append("a", S.GIVEN_BACK, {"why": "failed"})
    journal.append("b", S.FAILED, {"why": "x"})
    assert journal.failure_count("a") == 3 and journal.failure_count("c") == 0
    assert journal.failure_counts() == {"a": 3, "b": 1}
    journal.append("c", S.MEASURED, {"result": {"n": 1}})
    journal.append("c", S.POSTED, {"result_uuid": "x"})
    journal.append("c", S.MEASURED, {"result": {"n": 2}})  # e.g. a corrected result
    journal.append("d", S.MEASURED, {"result": {"n": 3}})
    assert [(e.request_uuid, e.payload["result"]["n"]) for e in journal.unposted()] == \
        [("c", 2), ("d", 3)]
    assert journal.ever(S.GIVEN_BACK) == {"a"} and journal.served() == {"c", "d"}


@pytest.mark.parametrize("state, payload", [
    ("failed", {}), ("measured", {"why": "x"}), ("posted", {}), ("skipped", None),
    ("rejected", {}), ("finished", {}), ("measured", {"result": float("nan")}),
    ("seen", {"request": object()}),
])
def test_malformed_events_refused(journal, state, payload):
    with pytest.raises(JournalError):
        journal.append("r", state, payload)
    assert journal.history() == []


def test_append_only_and_wal(journal):
    journal.append("r", S.SEEN)
    raw = sqlite3.connect(journal.path, isolation_level=None)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for sql in ("UPDATE events SET state = 'posted'", "DELETE FROM events"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                raw.execute(sql)
        journal.append("r", S.RESERVED)  # a reader in another connection sees each commit
        assert raw.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2
    finally:
        raw.close()


def test_not_a_journal(tmp_path):
    bad = tmp_path / "x.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError):
        Journal(bad)


WRITER = textwrap.dedent("""
    import sys
    from asab.broker.journal import Journal
    j = Journal(sys.argv[1])
    i = 0
    while True:
        state = ("seen", "reserved", "running", "failed", "given_back")[i % 5]
        ev = j.append(f"r{i // 5}", state, {"why": f"event {i}", "big": "x" * (i % 300)})
        print(ev.id, ev.request_uuid, state, flush=True)
        i += 1
""")


def test_every_committed_event_survives_sigkill(tmp_path):
    path = tmp_path / "tenant.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    committed = []
    try:
        while len(committed) < 60:
            line = proc.stdout.readline()
            assert line, "writer died"
            committed.append(line.split())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    committed += [line.split() for line in proc.stdout.read().splitlines()]
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with Journal(path) as j:
        events = {str(e.id): (e.request_uuid, e.state.value) for e in j.history()}
        for ev_id, request, state in committed:
            assert events[ev_id] == (request, state)
        assert len(events) >= len(committed)
        n = len(events)
        j.append("after", S.SEEN)  # still writable after the crash
        assert len(j.history()) == n + 1
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()


PAYLOAD = {S.REJECTED: {"why": "w"}, S.MEASURED: {"result": {"v": 1}},
           S.POSTED: {"result_uuid": "u"}, S.FAILED: {"why": "w"}, S.SKIPPED: {"why": "w"},
           S.REFUSED: {"why": "w"}}
FAST_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
"""tmpfs when available: each append fsyncs (synchronous=FULL), slow on a real disk."""
events = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(list(S))),
                  max_size=14)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_queries_match_a_model(seq):
    with tempfile.TemporaryDirectory(dir=FAST_DIR) as tmp, Journal(Path(tmp) / "j.sqlite") as j:
        for request, state in seq:
            j.append(request, state, PAYLOAD.get(state, {}))
        last = {r: s for r, s in seq}
        assert j.current_states() == last
        for state in S:
            assert set(j.in_state(state)) == {r for r, s in last.items() if s is state}
        assert j.served() == {r for r, s in seq if s in (S.MEASURED, S.POSTED)}
        fails = {r: sum(1 for x, s in seq if x == r and s is S.FAILED) for r, _ in seq}
        assert j.failure_counts() == {r: n for r, n in fails.items() if n}
        unposted = set()
        for r, s in seq:
            if s is S.MEASURED:
                unposted.add(r)
            elif s is S.POSTED:
                unposted.discard(r)
        assert {e.request_uuid for e in j.unposted()} == unposted
        assert [(e.request_uuid, e.state) for e in j.history()] == seq
