"""The pumps-and-valves server: pump and valve state, route-checked pump moves, stop.

Pump moves go along the least-dead-volume route (valves are set first, exactly as the
actions do), so no move pushes into a closed route. Moves are jobs (202 + job id).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Path
from pydantic import BaseModel, Field

from asab.actions.fluidics import MoveLog, dispense, fill
from asab.errors import RequestError
from asab.servers.common import ServerContext, Strict, lookup, make_app
from asab.servers.jobs import JobHandle, JobInfo

PumpName = Annotated[str, Path(min_length=1, max_length=64, description="pump name, e.g. 'A0.0'")]
ValveName = Annotated[str, Path(min_length=1, max_length=64, description="valve name, e.g. 'V1'")]
Node = Field(min_length=1, max_length=100, description="tubing node name, e.g. 'Reservoir1'")


class PumpState(BaseModel):
    name: str
    node: str = Field(description="tubing node of the syringe outlet")
    volume_max: float = Field(description="syringe volume, mL")
    fill_level: float = Field(description="current syringe content, mL")
    flow_min: float = Field(description="lowest drive flow, mL/s")
    flow_max: float = Field(description="highest drive flow, mL/s")
    pumping: bool
    primed: bool = Field(description="reservoir line primed since the bench was opened")


class ValveState(BaseModel):
    name: str
    position: int = Field(description="current position, 0-based")
    position_count: int
    ports: dict[str, int] = Field(description="outer-port node → position")


class AspirateRequest(Strict):
    source: str = Node
    volume: float = Field(gt=0, le=1000, description="mL to draw")
    flow: float | None = Field(default=None, gt=0, le=100,
                               description="mL/s; default settings.aspirate_flow")


class DispenseRequest(Strict):
    target: str = Node
    volume: float | None = Field(default=None, gt=0, le=1000,
                                 description="mL to push; default the whole syringe content")
    flow: float | None = Field(default=None, gt=0, le=100,
                               description="mL/s; default settings.gas_flow")


class ValveRequest(Strict):
    position: int = Field(ge=0, le=1000, description="target position, 0-based")


class MoveResult(BaseModel):
    pump: str
    volume: float = Field(description="mL moved")
    route: dict = Field(description="nodes, valve settings, dead volume (mL)")
    fill_level: float = Field(description="syringe content after the move, mL")


def create_pumps_app(ctx: ServerContext) -> FastAPI:
    """The pumps-and-valves server for ``ctx.bench``."""
    app = make_app(ctx, "pumps", "Syringe pumps and selector valves of one asab bench.")
    bench = ctx.bench

    def state(name: str) -> PumpState:
        drv = lookup(bench.pumps, name, "pump")
        return PumpState(name=name, node=bench.config.pump(name).node, volume_max=drv.volume_max,
                         fill_level=drv.fill_level(), flow_min=drv.flow_min,
                         flow_max=drv.flow_max, pumping=drv.is_pumping(),
                         primed=name in bench.primed)

    def valve_state(name: str) -> ValveState:
        drv = lookup(bench.valves, name, "valve")
        return ValveState(name=name, position=drv.position(), position_count=drv.position_count,
                          ports=dict(bench.config.valve(name).positions))

    def checked_flow(name: str, flow: float | None, default: float) -> float:
        drv = bench.pumps[name]
        flow = flow if flow is not None else min(default, drv.flow_max)
        if not drv.flow_min <= flow <= drv.flow_max:
            raise RequestError(f"flow {flow:g} mL/s outside the drive limits of {name} "
                               f"[{drv.flow_min:g}, {drv.flow_max:g}] mL/s")
        return flow

    @app.get("/pumps", tags=["pumps"])
    def list_pumps() -> list[PumpState]:
        return [state(n) for n in sorted(bench.pumps)]

    @app.get("/pumps/{name}", tags=["pumps"])
    def get_pump(name: PumpName) -> PumpState:
        return state(name)

    @app.post("/pumps/{name}/aspirate", tags=["pumps"], status_code=202)
    def aspirate(name: PumpName, body: AspirateRequest) -> JobInfo:
        """Draw ``volume`` mL from ``source`` along its route (a job)."""
        drv = lookup(bench.pumps, name, "pump")
        flow = checked_flow(name, body.flow, bench.config.settings.aspirate_flow)
        if body.volume > drv.volume_max:
            raise RequestError(f"{body.volume:g} mL exceeds the {drv.volume_max:g} mL syringe")
        route = bench.graph.route(body.source, bench.config.pump(name).node)

        def run(job: JobHandle) -> MoveResult:
            fill(bench, name, body.source, body.volume, MoveLog(), flow)
            return MoveResult(pump=name, volume=body.volume, route=route.to_dict(),
                              fill_level=drv.fill_level())
        return ctx.jobs.submit("aspirate", run, resources=("pumps", "valves"), steps=("aspirate",))

    @app.post("/pumps/{name}/dispense", tags=["pumps"], status_code=202)
    def dispense(name: PumpName, body: DispenseRequest) -> JobInfo:
        """Push ``volume`` mL (default all) into ``target`` along its route (a job)."""
        drv = lookup(bench.pumps, name, "pump")
        flow = checked_flow(name, body.flow, bench.config.settings.gas_flow)
        if body.volume is not None and body.volume > drv.volume_max:
            raise RequestError(f"{body.volume:g} mL exceeds the {drv.volume_max:g} mL syringe")
        route = bench.graph.route(bench.config.pump(name).node, body.target)

        def run(job: JobHandle) -> MoveResult:
            volume = body.volume if body.volume is not None else drv.fill_level()
            dispense(bench, name, body.target, volume, flow, MoveLog())
            return MoveResult(pump=name, volume=volume, route=route.to_dict(),
                              fill_level=drv.fill_level())
        return ctx.jobs.submit("dispense", run, resources=("pumps", "valves"), steps=("dispense",))

    @app.post("/pumps/{name}/stop", tags=["pumps"])
    def stop_pump(name: PumpName) -> PumpState:
        """Stop this pump now (allowed at any time; a job using it fails at its next step)."""
        lookup(bench.pumps, name, "pump").stop()
        return state(name)

    @app.post("/pumps/stop", tags=["pumps"])
    def stop_all() -> list[PumpState]:
        """Stop every pump now (allowed at any time; does not latch, see ``/estop``)."""
        bench.stop_all()
        return [state(n) for n in sorted(bench.pumps)]

    @app.get("/valves", tags=["valves"])
    def list_valves() -> list[ValveState]:
        return [valve_state(n) for n in sorted(bench.valves)]

    @app.get("/valves/{name}", tags=["valves"])
    def get_valve(name: ValveName) -> ValveState:
        return valve_state(name)

    @app.post("/valves/{name}/position", tags=["valves"])
    def switch_valve(name: ValveName, body: ValveRequest) -> ValveState:
        """Switch the valve (refused while a job holds the valves or the e-stop is latched)."""
        drv = lookup(bench.valves, name, "valve")
        if body.position >= drv.position_count:
            raise RequestError(f"valve {name} has positions 0…{drv.position_count - 1}")
        with ctx.jobs.claim(("valves",), motion=True):
            drv.switch(body.position)
        return valve_state(name)

    return app
