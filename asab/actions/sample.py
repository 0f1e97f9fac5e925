"""Records shared by the job actions: one logical push (:class:`PushRecord`), a summary of
repeated values (:class:`Summary`), and :func:`measure` (the densimeter's cell content).

The named actions themselves (prime, mix, deliver, drain, clean) are plans now
(:mod:`asab.plan.planner`), run by :mod:`asab.actions.executor`.
"""

from __future__ import annotations

import statistics

from pydantic import BaseModel, ConfigDict, Field

from asab.actions.bench import Bench
from asab.actions.fluidics import motion
from asab.drivers.base import DensityViscosityResult
from asab.errors import Cause, DeviceError
from asab.plan.steps import Purpose, PushSummary


class PushRecord(BaseModel):
    """One multi-pump push: which pumps at which flows, how much, where."""

    model_config = ConfigDict(extra="forbid")
    purpose: Purpose
    flows: dict[str, float] = Field(description="pump → mL/s")
    volume: float = Field(description="mL pushed in total")
    valve_settings: dict[str, int]
    sink: str
    shared_line: float = Field(default=0.0, description=(
        "mL of line from the mixer outlet shared with the sample route (it holds mixture "
        "when the sample is switched to the cell)"))

    @classmethod
    def of(cls, push: PushSummary) -> PushRecord:
        return cls(purpose=push.purpose, flows=dict(push.flows), volume=push.volume,
                   valve_settings=dict(push.valve_settings), sink=push.sink,
                   shared_line=push.shared_line)


def measure(bench: Bench, sample: str) -> DensityViscosityResult:
    """Measure what is in the densimeter/viscometer cell (repetitions per the method).

    Raises:
        DeviceError: no densimeter configured, or the instrument refused.
        TransportTimeout: no complete export in time.
    """
    if bench.densimeter is None:
        raise DeviceError("densimeter", Cause.NOT_CONFIGURED)
    with motion(bench):
        return bench.densimeter.measure(sample)


class Summary(BaseModel):
    """Mean and spread of the valid values of one quantity."""

    model_config = ConfigDict(extra="forbid")
    values: list[float | None]
    valid: list[bool]
    mean: float | None
    stdev: float | None
    n_valid: int


def summarize(values: list[float | None], valid: list[bool]) -> Summary:
    """Mean and sample standard deviation over the valid, present values."""
    good = [v for v, ok in zip(values, valid) if ok and v is not None]
    mean = statistics.fmean(good) if good else None
    stdev = statistics.stdev(good) if len(good) > 1 else None
    return Summary(values=values, valid=valid, mean=mean, stdev=stdev, n_valid=len(good))
