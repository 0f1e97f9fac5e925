"""What every server shares: the context (bench + jobs + token), bearer-token auth, the app
factory, and the status, jobs and emergency-stop routes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

import asab
from asab.actions.bench import Bench
from asab.servers.errors import ERROR_RESPONSES, install_error_handlers
from asab.servers.jobs import JobInfo, JobManager


@dataclass
class ServerContext:
    """Shared by the servers of one ``asab serve`` process: one bench, one job manager.

    Attributes:
        bench: the opened bench (its lock and liquid state are shared by all servers).
        jobs: the job manager (device claims, cancellation, emergency stop).
        token: the bearer token every request must carry (never logged).
    """

    bench: Bench
    jobs: JobManager
    token: str

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"ServerContext(bench={self.bench.config.name!r})"


class Strict(BaseModel):
    """Base of request bodies: unknown fields are an error (422)."""

    model_config = ConfigDict(extra="forbid")


class StatusResponse(BaseModel):
    server: str = Field(description="which server answered: pumps, balance, densimeter, actions")
    bench: str = Field(description="bench name from the configuration")
    version: str = Field(description="asab version")
    bench_time: float = Field(description="bench clock, s")
    estop: str | None = Field(description="reason of the latched emergency stop, or null")
    out_of_service: str | None = Field(description="why the bench refuses wet work, or null")
    busy: dict[str, str] = Field(description="held device group → id of the job holding it")


class EstopRequest(Strict):
    reason: str = Field(default="emergency stop via HTTP", min_length=1, max_length=200,
                        pattern=r"^[^\x00-\x1f\x7f]+$",
                        description="why (logged and shown in status)")


class EstopResponse(BaseModel):
    estop: str | None = Field(description="latched reason, or null after a reset")
    cancelled_jobs: list[str] = Field(default_factory=list, description="job ids asked to stop")


JobId = Annotated[str, Path(min_length=1, max_length=64, description="job id")]


def bearer(ctx: ServerContext):
    """A FastAPI dependency that accepts only ``Authorization: Bearer <ctx.token>`` (else 401);
    it declares the security scheme in OpenAPI (the middleware enforces it first)."""
    scheme = HTTPBearer(auto_error=False, description="token from [servers] or $ASAB_SERVER_TOKEN")

    async def check(cred: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if cred is None or not _token_ok(f"Bearer {cred.credentials}".encode(), ctx.token):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
    return check


PUBLIC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
"""Served without a token: the API description only."""


def _token_ok(header: bytes, token: str) -> bool:
    scheme, _, credentials = header.partition(b" ")
    return scheme.lower() == b"bearer" and secrets.compare_digest(credentials.strip(),
                                                                   token.encode())


class BearerAuthMiddleware:
    """ASGI middleware: 401 for every request without the right bearer token, before the
    body is read or validated (so an unauthenticated caller learns nothing about it)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            header = dict(scope["headers"]).get(b"authorization", b"")
            if not _token_ok(header, self.token):
                body = {"error": {"type": "Unauthorized", "message": "missing or wrong bearer token"}}
                await JSONResponse(body, status_code=401,
                                   headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def make_app(ctx: ServerContext, name: str, description: str) -> FastAPI:
    """A FastAPI app with auth on every route (:class:`BearerAuthMiddleware`, also declared
    as the OpenAPI security scheme), the shared error mapping, and the status, jobs and
    emergency-stop routes; docs at ``/docs``."""
    app = FastAPI(title=f"asab {name} server", version=asab.__version__, description=description,
                  dependencies=[Depends(bearer(ctx))], responses=ERROR_RESPONSES)
    app.add_middleware(BearerAuthMiddleware, token=ctx.token)
    install_error_handlers(app)
    app.include_router(_shared_routes(ctx, name))
    return app


def job_or_404(ctx: ServerContext, job_id: str) -> JobInfo:
    try:
        return ctx.jobs.get(job_id)
    except KeyError:
        raise HTTPException(404, f"no job {job_id!r}") from None


def lookup(table: dict[str, Any], name: str, what: str) -> Any:
    """``table[name]`` or HTTP 404 naming the ``what``."""
    if name not in table:
        raise HTTPException(404, f"no {what} {name!r}")
    return table[name]


def _shared_routes(ctx: ServerContext, name: str) -> APIRouter:
    r = APIRouter()

    @r.get("/status", tags=["status"])
    async def get_status() -> StatusResponse:
        """Bench state as this server sees it (cheap: no device is asked)."""
        b = ctx.bench
        return StatusResponse(server=name, bench=b.config.name, version=asab.__version__,
                              bench_time=b.clock.now(), estop=b.estop,
                              out_of_service=b.out_of_service, busy=ctx.jobs.busy())

    @r.get("/jobs", tags=["jobs"])
    async def list_jobs() -> list[JobInfo]:
        """Every running job and the most recent finished ones."""
        return ctx.jobs.list()

    @r.get("/jobs/{job_id}", tags=["jobs"])
    async def get_job(job_id: JobId) -> JobInfo:
        """State, step, progress (0–1) and result of a job."""
        return job_or_404(ctx, job_id)

    @r.post("/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel_job(job_id: JobId) -> JobInfo:
        """Cancel a running job: its pumps stop at once; the job ends as ``cancelled``."""
        job_or_404(ctx, job_id)
        return ctx.jobs.cancel(job_id)

    @r.get("/estop", tags=["safety"])
    async def get_estop() -> EstopResponse:
        return EstopResponse(estop=ctx.bench.estop)

    @r.post("/estop", tags=["safety"])
    def emergency_stop(body: EstopRequest | None = None) -> EstopResponse:
        """Stop every pump now, cancel every job, refuse motion until ``/estop/reset``."""
        reason = body.reason if body else EstopRequest().reason
        cancelled = ctx.jobs.emergency_stop(reason)
        return EstopResponse(estop=ctx.bench.estop, cancelled_jobs=cancelled)

    @r.post("/estop/reset", tags=["safety"])
    def reset_estop() -> EstopResponse:
        """Release the emergency-stop latch (pumps stay stopped)."""
        ctx.bench.reset_estop()
        return EstopResponse(estop=None)

    return r
