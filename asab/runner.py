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
    bench_minutes_per_sample: float | None = Field(description=(
        "the run's makespan (first step's start to last step's end, bench clock) / samples "
        "measured (succeeded jobs); jobs that overlap are counted once"))
    makespan_minutes: float | None = Field(default=None, description=(
        "bench minutes from the first step's start to the last step's end"))
    job_minutes: float | None = Field(default=None, description=(
        "mean bench minutes of one succeeded job, start to end (overlapping jobs each count "
        "their own time)"))
    pipelined: bool = False
    final_clean: str | None = Field(default=None, description=(
        "what was done after the last job when it left the cell holding sample (the clean "
        "of a job is left to the next one); None when nothing was needed"))
    stock_per_sample: float | None = Field(description="mL of stock drawn per succeeded job")
    rows: list[dict[str, Any]]
    bench_config: dict[str, Any] | None = Field(default=None, description=(
        "the bench configuration the run used: bench.toml path, its folder's files with "
        "their SHA-256 and one hash over them (asab.results.provenance.bench_provenance)"))


def run_jobs(bench: Bench, requests: Sequence[Any], run_dir: Path,
             progress: Progress | None = None, *, resume: bool = False,
             pipelined: bool = False, bench_file: Path | None = None) -> RunSummary:
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
        pipelined: run the jobs' steps concurrently where their resources allow
            (:mod:`asab.actions.pipeline`; the bench's clock must be a
            :class:`~asab.tasks.CooperativeClock`): the next job is planned, from the ledger
            the current one will leave, as soon as the current one is planned, and never
            more than one job runs ahead. A failure stops every job; the failed one is
            recovered, jobs not mixed yet go back to the queue, a job already mixed is
            recorded as failed. False: one step at a time, job after job.
        bench_file: the ``bench.toml`` of the bench: ``summary.json`` names it with its
            folder's hash (``bench_config``), and ``summary.csv`` and ``plots/`` are written
            next to it (:func:`asab.results.write_folder_outputs`). None: neither.
    """
    records_dir, raw_dir = run_dir / "records", run_dir / "raw"
    records_dir.mkdir(parents=True, exist_ok=True)
    raw_dir.mkdir(exist_ok=True)
    earlier = _earlier_records(records_dir) if resume else {}
    final: dict[int, JobRecord] = {}
    todo: list[tuple[int, Any]] = []
    for i, info in enumerate(requests, start=1):
        done = earlier.get(i)
        if done is not None and done.consumables is None:  # final: not run again
            final[i] = done
        else:
            todo.append((i, info))
    run_id = re.sub(r"[^A-Za-z0-9_-]", "-", run_dir.resolve().name) or "run"
    last = todo[-1][0] if todo else None

    def job(i: int, info: Any, pipeline=None) -> JobRecord:
        job_id = f"job{i:03d}"
        t0 = bench.clock.now()

        def step(name: str) -> None:
            if progress:
                progress(i, len(requests), job_id, name, bench.clock.now() - t0)

        step("parse")
        if bench.estop is not None:  # the operator stopped the bench: run nothing more
            rec = _not_run(bench, info, job_id, f"not run: the emergency stop is latched "
                                                 f"({bench.estop}); reset it and run again")
        else:
            rec = _run_one(bench, info, job_id, f"{run_id}_{job_id}", step, pipeline,
                           clean_after=i == last)
        if not rec.requeued:
            _save(rec, records_dir, raw_dir, i)
            final[i] = rec
            step(rec.status)
        return rec

    if pipelined:
        _pipelined(bench, todo, job)
    else:
        for i, info in todo:
            job(i, info)
    cleaned = leave_clean(bench)
    records = [final[i] for i in sorted(final)]
    ran = [final[i] for i, _ in todo if i in final]
    summary = summarize_run(records, run_dir, ran=ran)
    summary.pipelined = pipelined
    summary.final_clean = cleaned
    _say_waiting(bench, summary.waiting)
    if bench_file is not None:
        from asab.results.provenance import bench_provenance

        summary.bench_config = bench_provenance(bench_file, name=bench.config.name)
    (run_dir / "summary.json").write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    if bench_file is not None:
        from asab.results import write_folder_outputs

        write_folder_outputs(run_dir, bench.config)
    return summary


def _pipelined(bench: Bench, todo: list[tuple[int, Any]],
               job: Callable[[int, Any, Any], JobRecord]) -> None:
    """Run ``todo`` as pipelined stretches (:func:`_stretch`); after a failure the jobs sent
    back (not mixed yet) start a new stretch."""
    queue = list(todo)
    while queue:
        feeder = bench.clock.spawn(lambda q=queue: _stretch(bench, q, job), "queue")
        bench.clock.join([feeder])
        if feeder.error is not None:
            raise feeder.error
        again = feeder.result
        if len(again) >= len(queue):  # cannot happen: the failed job's record is final
            raise RuntimeError("a pipelined stretch finished no job")
        queue = sorted(again, key=lambda item: item[0])


def _stretch(bench: Bench, queue: list[tuple[int, Any]],
             job: Callable[[int, Any, Any], JobRecord]) -> list[tuple[int, Any]]:
    """One pipelined stretch (run as a task itself): each job a task, started once the job
    before it is planned and the one before that has ended. Returns the jobs to run again."""
    from asab.actions.pipeline import Pipeline

    pipe = Pipeline(bench)
    again: list[tuple[int, Any]] = []
    tasks = []

    def run(n: int, i: int, info: Any) -> Callable[[], None]:
        def go() -> None:
            if job(i, info, (pipe, n)).requeued:
                again.append((i, info))
        return pipe.job_task(n, go)

    before, bench.task_check = bench.task_check, pipe.check
    try:
        for n, (i, info) in enumerate(queue):
            if not pipe.wait_to_start(n, f"job {i} to be next"):
                again.extend(queue[n:])
                break
            tasks.append(bench.clock.spawn(run(n, i, info), f"job{i:03d}"))
        pipe.wait_ended(tasks)
    finally:
        bench.task_check = before
    for t in tasks:
        if t.error is not None:
            raise t.error
    return again


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


def leave_clean(bench: Bench) -> str | None:
    """After a run whose jobs left the cleaning to the next one (``clean_after``): when the
    ledger says the densimeter's cell still holds sample, rinse and dry it (a clean plan).
    Nothing with ``[carryover] sizing = "fixed"``, out of service or after an e-stop.

    Returns:
        None when nothing was needed, else what was done (a failure is logged, not raised:
        the records are written already and the next run's first job pre-cleans).
    """
    from asab.actions.executor import execute
    from asab.actions.job import context
    from asab.config import SizingMode
    from asab.plan.carryover import foreign_in_cell
    from asab.plan.planner import density_instrument, plan_clean

    cfg = bench.config
    if (cfg.carryover.sizing is not SizingMode.PREDICTED or cfg.densimeter is None
            or bench.out_of_service or bench.estop is not None):
        return None
    try:
        ledger = bench.ledger.current()
        if foreign_in_cell(cfg, ledger, density_instrument(cfg)) <= 1e-6:
            return None
        execute(bench, plan_clean(context(bench), ledger))
    except Exception as exc:  # noqa: BLE001 - logged; the next job pre-cleans
        log.warning("final clean of the cell failed: %s", exc)
        return f"final clean failed: {exc}"
    return "cell cleaned after the run"


def _run_one(bench: Bench, item: Any, job_id: str, sample: str, step,
             pipeline=None, *, clean_after: bool = True) -> JobRecord:
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
    extra = {"pipeline": pipeline} if pipeline is not None else {}
    return run_density_job(bench, checked.job, job_id, progress=step, sample=sample,
                           clean_after=clean_after, **extra)


def _save(rec: JobRecord, records_dir: Path, raw_dir: Path, index: int) -> None:
    """Write the raw export to ``raw_dir`` and the record to ``records_dir``; the record's
    ``raw_file`` becomes that copy's path relative to the run folder (``raw/<name>``)."""
    if rec.measurement is not None:
        raw = raw_dir / Path(rec.measurement.raw_file).name
        with raw.open("w", encoding="utf-8", newline="") as fh:  # keep the line ends verbatim
            fh.write(rec.measurement.raw_text)
        rec.measurement.raw_file = f"{raw_dir.name}/{raw.name}"
    path = records_dir / f"{index:03d}_{rec.job_id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(rec.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(path)


def makespan(records: Sequence[JobRecord]) -> float | None:
    """s from the first step's start to the last step's end over ``records`` (bench clock),
    or None when no step ran."""
    spans = [(st.start, st.end) for r in records for st in r.step_times]
    if not spans:
        return None
    return max(b for _, b in spans) - min(a for a, _ in spans)


def summarize_run(records: Sequence[JobRecord], run_dir: Path,
                  ran: Sequence[JobRecord] | None = None) -> RunSummary:
    """Counts, per-job rows and the per-sample costs (bench minutes, stock drawn).

    ``ran``: the records of jobs run by this process (one bench clock); the makespan is
    theirs (default: all of ``records``)."""
    ok = [r for r in records if r.status == "succeeded"]
    rows = [_row(r) for r in records]
    ran = records if ran is None else ran
    span = makespan(ran)
    measured = sum(r.status == "succeeded" for r in ran)
    return RunSummary(
        run_dir=str(run_dir), jobs=len(records), succeeded=len(ok),
        rejected=sum(r.status == "rejected" for r in records),
        failed=sum(r.status == "failed" for r in records),
        waiting=waiting_reason(records),
        bench_minutes_per_sample=span / 60 / measured if span is not None and measured else None,
        makespan_minutes=span / 60 if span is not None else None,
        job_minutes=statistics.fmean(r.bench_seconds / 60 for r in ok) if ok else None,
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

