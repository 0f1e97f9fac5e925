"""The balance server: read, tare and zero the balance.

Tare and zero claim the balance (HTTP 409 while a job uses it). A reading only looks: it
answers during a job too (the driver serialises its serial exchanges), except a *stable*
reading while a job holds the balance — waiting for a stable value could hold the line the
job weighs on for up to the stable timeout, so that one answers 409 and ``stable=false``
answers at once."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from asab.drivers.base import Balance, BalanceReading
from asab.servers.common import ServerContext, make_app


class BalanceInfo(BaseModel):
    name: str
    model: str
    vessel: str = Field(description="tubing node whose content sits on the pan")
    readability: float = Field(description="g")
    stable_timeout: float = Field(description="s to wait for a stable value")


def create_balance_app(ctx: ServerContext) -> FastAPI:
    """The balance server for ``ctx.bench`` (404 on every balance route if none is configured)."""
    app = make_app(ctx, "balance", "The balance (Sartorius Entris II) of one asab bench.")
    bench = ctx.bench

    def balance() -> Balance:
        if bench.balance is None or bench.config.balance is None:
            raise HTTPException(404, "this bench has no balance")
        return bench.balance

    @app.get("/balance", tags=["balance"])
    def info() -> BalanceInfo:
        balance()
        s = bench.config.balance
        return BalanceInfo(name=s.name, model=s.model, vessel=s.vessel,
                           readability=s.readability, stable_timeout=s.stable_timeout)

    @app.get("/balance/reading", tags=["balance"])
    def reading(stable: Annotated[bool, Query(description="wait for a stable value")] = False,
                timeout: Annotated[float | None, Query(
                    ge=1, le=120, description="s to wait; default the configured stable_timeout")]
                = None) -> BalanceReading:
        """Read the mass on the pan (g). Answers during a job (it moves nothing); a stable
        reading while a job holds the balance is 409 (ask ``stable=false``)."""
        drv = balance()
        if not stable:
            return drv.read(stable=False, timeout=timeout)
        with ctx.jobs.claim(("balance",)):
            return drv.read(stable=True, timeout=timeout)

    @app.post("/balance/tare", tags=["balance"])
    def tare() -> BalanceReading:
        """Tare, then return a (not necessarily stable) reading."""
        drv = balance()
        with ctx.jobs.claim(("balance",)):
            drv.tare()
            return drv.read(stable=False)

    @app.post("/balance/zero", tags=["balance"])
    def zero() -> BalanceReading:
        """Zero, then return a (not necessarily stable) reading."""
        drv = balance()
        with ctx.jobs.claim(("balance",)):
            drv.zero()
            return drv.read(stable=False)

    return app
