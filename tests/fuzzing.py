"""Bounded, seeded fuzzers of everything asab reads from outside, shared by the fuzz tests
(tests/test_fuzz.py: a short run in CI, a long one behind ``-m fuzz_long``) and the report
script (benchmarks/fuzz_report.py, whose table is in the README's reliability section).

Each fuzzer makes ``n`` inputs from a seeded generator and sorts every outcome into one of

* ``accepted`` — the input was fine and was taken;
* ``clean`` — refused with asab's own error (a located problem, an exit code 1 or 2, a 4xx);
* ``traceback`` — any other exception escaped (a bug);
* ``hang`` — it took longer than :data:`HANG_S` (a bug);
* ``5xx`` — a server answered with a server error (a bug);
* ``lost`` — a file that was there before is gone or changed afterwards (a bug).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sqlite3
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
HIU_2023 = ROOT / "hardware_configs" / "hiu_2023"
HANG_S = 5.0
OUTCOMES = ("accepted", "clean", "traceback", "hang", "5xx", "lost")
FOUND: list[str] = []
"""Tracebacks seen (for the report and the tests' failure messages)."""

VALUES: list[str] = [
    "inf", "-inf", "nan", "1e308", "-1", "0", "1e-300", "10000000", "1e400", "true", "[]", "{}",
    '""', '"x"', '"10**10**10 mL/min"', '"1/0 mL/min"', '"3 mL/min)"', '"' + "*1" * 500 + '"',
    '"٣ mL"', '"3 parsec"', '"-5 mL"', '"' + "a" * 5000 + '"', "3", "0.5", '"0.5 s"',
]
"""TOML values tried in place of a bench.toml value."""

CELLS: list[str] = ["", "-1", "inf", "nan", "1e308", "٩", "x", "0", ";", '"', "not_fixed",
                    "directed", "1e-300", "99999999", "a" * 300]
"""CSV cells tried in place of a cell of the layout tables."""

TEXT: list[str] = ["", " ", "LiPF6=0.07,EC=0.29,EMC=0.64", "LiPF6=inf", "EC=1e400", "=",
                   ",,,", "LiPF6=0.5,EC=0.5", "\x00", "\ud800", "é" * 1000, "A0.0", "M1.0",
                   "Reservoir9", "V1=99", "--help", "-1", "1e300", "nan", "x" * 10000]
"""Command-line words tried as arguments."""


def _run(fn: Callable[[], str], files: Path | None) -> str:
    """Classify one call: its own verdict, or traceback/hang/lost."""
    before = _snapshot(files) if files is not None else None
    t0 = time.monotonic()
    try:
        verdict = fn()
    except Exception:  # noqa: BLE001 - that is what is being counted
        FOUND.append(traceback.format_exc())
        return "traceback"
    if time.monotonic() - t0 > HANG_S:
        return "hang"
    if before is not None and _snapshot(files) != before:
        return "lost"
    return verdict


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ------------------------------------------------------------------------------- config
def fuzz_config(n: int, seed: int = 0) -> Counter:
    """Replace one value of bench.toml, or one cell of a layout table, with odd input; run
    ``asab check-config --json``."""
    from asab.cli.main import app
    rng, runner, counts = random.Random(seed), CliRunner(), Counter()
    toml_lines = (HIU_2023 / "bench.toml").read_text().splitlines()
    value_lines = [i for i, l in enumerate(toml_lines) if " = " in l and not l.startswith("#")]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(n):
            bench = Path(tmp) / f"b{rng.randrange(10**9)}"
            shutil.copytree(HIU_2023, bench)
            if rng.random() < 0.6:
                lines = list(toml_lines)
                i = rng.choice(value_lines)
                lines[i] = lines[i].split(" = ")[0] + " = " + rng.choice(VALUES)
                (bench / "bench.toml").write_text("\n".join(lines) + "\n")
            else:
                name = rng.choice(["nodes.csv", "edges.csv", "tubing.csv", "stockSolutions.csv",
                                   "chemicals.csv"])
                rows = [r.split(";") for r in (bench / name).read_text(encoding="utf-8-sig").splitlines()]
                r = rng.randrange(1, len(rows))
                if rows[r] and rows[r] != [""]:
                    rows[r][rng.randrange(len(rows[r]))] = rng.choice(CELLS)
                (bench / name).write_text("\n".join(";".join(x) for x in rows) + "\n")

            def call(bench=bench) -> str:
                result = runner.invoke(app, ["check-config", str(bench), "--json"])
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    raise result.exception
                if result.exit_code == 0:
                    return "accepted"
                json.loads(result.stdout)["problems"][0]["reason"]  # a located, readable problem
                return "clean"
            counts[_run(call, bench)] += 1
            shutil.rmtree(bench)
    return counts


# ----------------------------------------------------------------------------------- CLI
def fuzz_cli(n: int, seed: int = 0) -> Counter:
    """Odd words as arguments of the cheap commands (the console entry point's mapping of
    library errors to exit 1 included)."""
    from asab.cli.main import app
    from asab.errors import AsabError
    rng, runner, counts = random.Random(seed), CliRunner(), Counter()
    commands = [["formulate"], ["route"], ["limits"], ["check-config"], ["route", "A0.0"],
                ["formulate", "LiPF6=0.07,EC=0.29,EMC=0.64", "--volume"],
                ["formulate", "LiPF6=0.07,EC=0.29,EMC=0.64", "--policy"], ["draw", "--valve"]]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(n):
            args = rng.choice(commands) + [rng.choice(TEXT) for _ in range(rng.randrange(1, 3))]
            if args[0] == "draw":
                args += ["--out", str(Path(tmp) / "x.svg")]

            def call(args=args) -> str:
                result = runner.invoke(app, args)
                exc = result.exception
                if exc is not None and not isinstance(exc, (SystemExit, AsabError)):
                    raise exc
                return "accepted" if result.exit_code == 0 else "clean"
            counts[_run(call, None)] += 1
    return counts


# ------------------------------------------------------------------------------ jobs files
def _mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    odd = [None, True, 5, -1, 1e308, math.inf, math.nan, "", "x" * 5000, "\ud800", [], {},
           [1, 2], {"a": {"b": {"c": []}}}, 10**400, "1e400", "٣"]
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        return {**value, key: _mutate(value[key], rng, depth + 1)}
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = rng.randrange(len(value))
        return value[:i] + [_mutate(value[i], rng, depth + 1)] + value[i + 1:]
    return rng.choice(odd)


def fuzz_jobs(n: int, seed: int = 0) -> Counter:
    """A demo request with one subtree replaced by odd JSON; the run's per-item path
    (:func:`asab.requests.item_problem`, the parser, the tenant's capability check) and the
    record copy must refuse it cleanly."""
    from asab.broker.capabilities import check_request
    from asab.config.loader import load_bench
    from asab.errors import RequestError
    from asab.requests import item_problem, parse_density_request, safe_copy
    rng, counts = random.Random(seed), Counter()
    config = load_bench(HIU_2023)
    good = json.loads((HIU_2023 / "demo_requests.json").read_text())[0]
    for _ in range(n):
        item = _mutate(good, rng)

        def call(item=item) -> str:
            json.dumps(safe_copy(item)).encode("utf-8")  # what the record stores
            check_request(config, safe_copy(item))  # never raises for a bad request
            if item_problem(item) is not None:
                return "clean"
            try:
                parse_density_request(safe_copy(item), config)
            except RequestError:
                return "clean"
            return "accepted"
        counts[_run(call, None)] += 1
    return counts


# ----------------------------------------------------------------------------------- HTTP
def fuzz_http(n: int, seed: int = 0) -> Counter:
    """Odd JSON bodies, paths and headers to every POST route of every server (in-process)."""
    from fastapi.testclient import TestClient
    from tests._servers_support import AUTH, served_bench
    rng, counts = random.Random(seed), Counter()
    bodies = [b"", b"{", b"[]", b"null", b'{"volume": 1e400}', b'{"reason": "' + b"x" * 300 + b'"}',
              b'{"source": "\\ud800", "volume": 1}', b'{"position": 99999}',
              b'{"composition": {"LiPF6": "nan"}}', b"\xff\xfe", b'{"a":' * 2000 + b"1" + b"}" * 2000,
              json.dumps({"composition": {"LiPF6": 0.07, "EC": 0.29, "EMC": 0.64}, "volume": 1}).encode()]
    with served_bench() as (ctx, apps):
        clients = {name: TestClient(app, headers=AUTH) for name, app in apps.items()}
        routes = [(name, route.path) for name, app in apps.items() for route in app.routes
                  if "POST" in getattr(route, "methods", ()) and "estop" not in route.path
                  and "reset" not in route.path]
        for _ in range(n):
            name, path = rng.choice(routes)
            path = path.replace("{name}", rng.choice(["A0.0", "V1", "nope", "%00", "x" * 300]))
            path = path.replace("{job_id}", rng.choice(["x", "0" * 64]))
            body = rng.choice(bodies)

            def call(name=name, path=path, body=body) -> str:
                r = clients[name].post(path, content=body,
                                       headers={"Content-Type": "application/json"})
                if r.status_code >= 500:
                    return "5xx"
                return "accepted" if r.status_code < 400 else "clean"
            counts[_run(call, None)] += 1
            ctx.jobs.shutdown(timeout=5)
            ctx.bench.reset_estop()
            ctx.bench.out_of_service = None
    return counts


# -------------------------------------------------------------------------------- journal
def fuzz_journal(n: int, seed: int = 0) -> Counter:
    """Random bytes over part of a journal (and WAL-less, checkpointed) file; open it and
    check it against its records as the tenant does. A refused journal must be left as found."""
    from asab.broker.journal import Journal, JournalError, JournalState
    rng, counts = random.Random(seed), Counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        with Journal(base / "journal.sqlite") as jr:
            for i in range(200):
                jr.append(f"req-{i}", JournalState.SEEN, {"request": {"i": i}})
        db = sqlite3.connect(base / "journal.sqlite")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        (base / "records").mkdir()
        (base / "records" / "job1.json").write_text(json.dumps({"request_id": "req-1"}))
        for k in range(n):
            state = Path(tmp) / f"s{k}"
            shutil.copytree(base, state)
            path = state / "journal.sqlite"
            data = bytearray(path.read_bytes())
            if rng.random() < 0.15:
                data = bytearray()
            else:
                at = rng.randrange(len(data))
                size = rng.choice([1, 16, 512, 4096])
                data[at:at + size] = (bytes(size) if rng.random() < 0.5 else rng.randbytes(size))
            path.write_bytes(bytes(data))
            keep = {"records/job1.json": (state / "records" / "job1.json").read_bytes()}

            def call(path=path, state=state, keep=keep) -> str:
                try:
                    with Journal(path) as jr:
                        jr.check_records(state / "records")
                        jr.history()
                        jr.served()
                except JournalError:
                    if (state / "records" / "job1.json").read_bytes() != keep["records/job1.json"]:
                        return "lost"
                    return "clean"
                return "accepted"
            counts[_run(call, None)] += 1
            shutil.rmtree(state)
    return counts


FUZZERS: dict[str, Callable[[int, int], Counter]] = {
    "config (bench.toml values, CSV cells)": fuzz_config,
    "command line (odd arguments)": fuzz_cli,
    "jobs files (odd request items)": fuzz_jobs,
    "HTTP (odd bodies and paths, every POST route)": fuzz_http,
    "journal (random or zeroed bytes, empty file)": fuzz_journal,
}
