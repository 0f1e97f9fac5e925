"""The densimeter/viscometer server: instrument settings and measuring what is in the cell."""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from asab.actions.sample import Summary, measure, summarize
from asab.drivers.base import DensityViscosityResult, RepetitionResult
from asab.servers.common import ServerContext, Strict, make_app
from asab.servers.jobs import RESOURCES, JobHandle, JobInfo

log = logging.getLogger(__name__)

SAMPLE_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"


class DensimeterInfo(BaseModel):
    name: str
    instrument: str = Field(description="name of the measuring cell in the tubing layout")
    inlet: str
    outlet: str
    method: str
    temperature: float = Field(description="K, the method's temperature")
    repetitions: int
    result_timeout: float = Field(description="s to wait for the export")


class MeasureRequest(Strict):
    sample: str = Field(pattern=SAMPLE_PATTERN, description="sample name (letters, digits, _ -)")


class CheckRequest(Strict):
    sample: str = Field(default="check", pattern=SAMPLE_PATTERN)
    check_type: str = Field(default="Water", pattern=r"^[A-Za-z0-9_\- ]{1,100}$",
                            description="instrument check configured on the densimeter")


class MeasureResult(BaseModel):
    sample: str
    method: str
    density: Summary = Field(description="g/cm³, per repetition and mean of the valid ones")
    viscosity: Summary = Field(description="dynamic viscosity, mPa·s")
    repetitions: list[RepetitionResult] = Field(description="temperatures in K")
    raw_file: str


def measure_result(result: DensityViscosityResult) -> MeasureResult:
    """Summarise an instrument export (mean and standard deviation of valid values)."""
    reps = result.repetitions
    return MeasureResult(
        sample=result.sample, method=result.method, repetitions=list(reps),
        density=summarize([r.density for r in reps], [r.density_valid for r in reps]),
        viscosity=summarize([r.viscosity for r in reps], [r.viscosity_valid for r in reps]),
        raw_file=result.raw_file)


def cell_composition(bench) -> dict[str, float] | None:
    """Name → mole fraction the bench ledger predicts in the densimeter's cell now (its
    line, wall film and pocket; :func:`asab.plan.carryover.predict_cell`), or None when the
    cell holds nothing the stocks or the solvent explain."""
    from asab.formulation import by_name
    from asab.plan.carryover import predict_cell
    from asab.plan.planner import density_instrument

    cfg = bench.config
    try:
        pred = predict_cell(cfg, bench.ledger.current(), density_instrument(cfg), {})
    except Exception as exc:  # noqa: BLE001 - the record only lacks the composition
        log.warning("no predicted cell composition: %s", exc)
        return None
    x = {k: v for k, v in pred.composition.items() if v > 0}
    return by_name(x, cfg) if x else None


def submit_measure(ctx: ServerContext, sample: str) -> JobInfo:
    """Measure the cell's content as a job. It claims the instrument cell (and the balance's
    and pumps' nothing): liquid may move elsewhere meanwhile, never through the cell."""
    if ctx.bench.densimeter is None:
        raise HTTPException(404, "this bench has no densimeter")

    def run(job: JobHandle) -> MeasureResult:
        composition = cell_composition(ctx.bench)
        if composition is not None:
            job.note(composition=composition)
        result = measure(ctx.bench, sample)
        job.keep_raw(result.raw_file, result.raw_text)
        return measure_result(result)
    cell = ctx.bench.config.densimeter.instrument
    return ctx.jobs.submit("measure", run, resources=[f"cell:{cell}"], steps=("measure",))


def create_densimeter_app(ctx: ServerContext) -> FastAPI:
    """The densimeter/viscometer server for ``ctx.bench``."""
    app = make_app(ctx, "densimeter",
                   "Densimeter/viscometer (Anton Paar DMA 4100 M + Lovis 2000 ME) of one bench.")
    bench = ctx.bench

    @app.get("/densimeter", tags=["densimeter"])
    def info() -> DensimeterInfo:
        s = bench.config.densimeter
        if s is None or bench.densimeter is None:
            raise HTTPException(404, "this bench has no densimeter")
        cell = bench.config.instrument(s.instrument)
        return DensimeterInfo(name=s.name, instrument=s.instrument, inlet=cell.inlet,
                              outlet=cell.outlet, method=s.method, temperature=s.temperature,
                              repetitions=s.repetitions, result_timeout=s.result_timeout)

    @app.post("/densimeter/measure", tags=["densimeter"], status_code=202)
    def start_measure(body: MeasureRequest) -> JobInfo:
        """Measure what is in the cell now (a job; result: density g/cm³, viscosity mPa·s)."""
        return submit_measure(ctx, body.sample)

    @app.post("/densimeter/check", tags=["densimeter"], status_code=202)
    def start_check(body: CheckRequest) -> JobInfo:
        """Run an instrument check (e.g. a water check) on what is in the cell (a job)."""
        check = getattr(bench.densimeter, "check", None)
        if check is None:
            raise HTTPException(404, "this bench's densimeter has no instrument checks")
        def run(job: JobHandle) -> MeasureResult:
            result = check(body.sample, body.check_type)
            job.keep_raw(result.raw_file, result.raw_text)
            return measure_result(result)
        return ctx.jobs.submit("check", run, resources=RESOURCES, steps=("check",))

    return app
