"""The main job: take FINALES2 density requests one by one, run them, keep every record.

Each job's record is written to ``<run>/records/`` the moment the job ends (a crash later
loses nothing), with the instrument's raw export next to it under ``<run>/raw/``.
"""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from asab.actions.bench import Bench
from asab.actions.job import JobRecord, new_record, run_density_job
from asab.errors import RequestError, describe
from asab.formulation import by_name
from asab.requests import DENSITY, safe_copy, validate_request

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str, str, float], None]
"""``progress(index, total, job_id, step, bench_seconds)`` for displays."""


class RunSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_dir: str
    jobs: int
    succeeded: int
    rejected: int
    failed: int
    waiting: str | None = Field(default=None, description=(
        "why the bench waits for the operator: the consumables some jobs were refused for "
        "(those jobs run when the same command is given again after the fix)"))
    bench_minutes_per_sample: float | None = Field(description="mean over succeeded jobs")
    stock_per_sample: float | None = Field(description="mL of stock drawn per succeeded job")
    rows: list[dict[str, Any]]


def run_jobs(bench: Bench, requests: Sequence[Any], run_dir: Path,
             progress: Progress | None = None, *, resume: bool = False) -> RunSummary:
    """Run ``requests`` (FINALES2 RequestInfo objects) in order on ``bench``.

    Malformed or unmakeable requests leave a record with the reason; the run continues. A job
    the ledger cannot supply (stock, solvent, waste or balance capacity) is refused before any
    liquid moves, with the consumable named (``JobRecord.consumables``); the later jobs are
    still planned, each run or refused on its own, and the summary's ``waiting`` says what
    the operator must do. The instrument's sample name is ``<run folder name>_<job id>``,
    unique across runs.

    Args:
        resume: ``run_dir`` holds an earlier run of the same requests: keep its final records
            and run only the jobs refused for a consumable (after the operator's fix).
    """
    records_dir, raw_dir = run_dir / "records", run_dir / "raw"
    records_dir.mkdir(parents=True, exist_ok=True)
    raw_dir.mkdir(exist_ok=True)
    earlier = _earlier_records(records_dir) if resume else {}
    records: list[JobRecord] = []
    run_id = re.sub(r"[^A-Za-z0-9_-]", "-", run_dir.resolve().name) or "run"
    for i, info in enumerate(requests, start=1):
        job_id = f"job{i:03d}"
        done = earlier.get(i)
        if done is not None and done.consumables is None:  # final: not run again
            records.append(done)
            continue
        t0 = bench.clock.now()

        def step(name: str, _i=i, _id=job_id, _t0=t0) -> None:
            if progress:
                progress(_i, len(requests), _id, name, bench.clock.now() - _t0)

        step("parse")
        if bench.estop is not None:  # the operator stopped the bench: run nothing more
            rec = _not_run(bench, info, job_id, f"not run: the emergency stop is latched "
                                                 f"({bench.estop}); reset it and run again")
        else:
            rec = _run_one(bench, info, job_id, f"{run_id}_{job_id}", step)
        _save(rec, records_dir, raw_dir, i)
        records.append(rec)
        step(rec.status)
    summary = summarize_run(records, run_dir)
    _say_waiting(bench, summary.waiting)
    (run_dir / "summary.json").write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    return summary


def _earlier_records(records_dir: Path) -> dict[int, JobRecord]:
    """Index → record of an earlier run in ``records_dir`` (files ``NNN_jobNNN.json``).

    Raises:
        RequestError: a record is unreadable (never run a job twice by mistake).
    """
    out: dict[int, JobRecord] = {}
    for path in sorted(records_dir.glob("[0-9][0-9][0-9]_*.json")):
        try:
            out[int(path.name[:3])] = JobRecord.model_validate_json(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise RequestError(f"earlier record {path} is unreadable: {exc}") from exc
    return out


def waiting_reason(records: Sequence[JobRecord]) -> str | None:
    """What the operator must do for the jobs refused for a consumable, or None: each
    consumable short once (node, what is left, the fix), with the number of jobs waiting."""
    short: dict[tuple[str, str], dict] = {}
    waiting = [r for r in records if r.consumables]
    for rec in waiting:
        for item in rec.consumables:
            short.setdefault((item["consumable"], item["node"]), item)
    if not short:
        return None
    parts = [f"{c} {item.get('stock') or node} ({node}): {item['left']:.2f} {item['unit']} left; "
             f"{item['fix']}" for (c, node), item in sorted(short.items())]
    return f"{len(waiting)} job(s) wait for the operator: " + "; ".join(parts)


def _say_waiting(bench: Bench, reason: str | None) -> None:
    """Keep the waiting reason in the ledger (``asab bench status`` shows it)."""
    def change(ledger) -> None:
        ledger.waiting = reason
    if bench.ledger.current().waiting != reason:
        bench.ledger.update(change)
    if reason:
        log.warning("bench waits for the operator: %s", reason)


def _not_run(bench: Bench, item: Any, job_id: str, reason: str) -> JobRecord:
    info = safe_copy(item)
    rid = str(info.get("uuid", ""))[:64] if isinstance(info, dict) else ""
    rec = new_record(bench, job_id, rid, info)
    rec.status, rec.reason = "rejected", reason
    rec.finished = rec.started
    return rec


def _run_one(bench: Bench, item: Any, job_id: str, sample: str, step) -> JobRecord:
    info = safe_copy(item)  # what the record keeps: always storable
    checked = validate_request(item, bench.config, capabilities=(DENSITY,))
    if checked.job is None:
        exc = checked.error()
        rec = new_record(bench, job_id, checked.request_id, info)
        rec.requested = by_name(checked.formulation, bench.config)
        rec.status, rec.reason, rec.error = "rejected", str(exc), describe(exc)
        rec.finished = rec.started
        return rec
    checked.job.raw = info
    return run_density_job(bench, checked.job, job_id, progress=step, sample=sample)


def _save(rec: JobRecord, records_dir: Path, raw_dir: Path, index: int) -> None:
    if rec.measurement is not None:
        raw = raw_dir / Path(rec.measurement.raw_file).name
        with raw.open("w", encoding="utf-8", newline="") as fh:  # keep the line ends verbatim
            fh.write(rec.measurement.raw_text)
    path = records_dir / f"{index:03d}_{rec.job_id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(rec.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(path)


def summarize_run(records: Sequence[JobRecord], run_dir: Path) -> RunSummary:
    """Counts, per-job rows and the per-sample costs (bench minutes, stock drawn)."""
    ok = [r for r in records if r.status == "succeeded"]
    rows = [_row(r) for r in records]
    return RunSummary(
        run_dir=str(run_dir), jobs=len(records), succeeded=len(ok),
        rejected=sum(r.status == "rejected" for r in records),
        failed=sum(r.status == "failed" for r in records),
        waiting=waiting_reason(records),
        bench_minutes_per_sample=statistics.fmean(r.bench_seconds / 60 for r in ok) if ok else None,
        stock_per_sample=statistics.fmean(sum(r.stock_drawn.values()) for r in ok) if ok else None,
        rows=rows,
    )


def _row(r: JobRecord) -> dict[str, Any]:
    m = r.measurement
    return {
        "job": r.job_id, "request": r.request_id, "status": r.status,
        "requested": r.requested, "achieved": r.achieved, "closest": r.closest,
        "distance": r.distance,
        "density": m.density.mean if m else None,
        "density_valid": f"{m.density.n_valid}/{len(m.density.values)}" if m else None,
        "viscosity": m.viscosity.mean if m else None,
        "viscosity_valid": f"{m.viscosity.n_valid}/{len(m.viscosity.values)}" if m else None,
        "bench_minutes": r.bench_seconds / 60,
        "stock_drawn": sum(r.stock_drawn.values()), "reason": r.reason,
    }

