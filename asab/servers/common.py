"""What every server shares: the context (bench + jobs + token), bearer-token auth, the app
factory, the token-protected API description, and the status, jobs and emergency-stop routes."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

import asab
from asab.actions.bench import Bench
from asab.servers.docs import add_docs_routes, is_docs_path
from asab.servers.errors import ERROR_RESPONSES, install_error_handlers
from asab.servers.jobs import JobInfo, JobManager
from asab.servers.limits import MAX_BODY, BodyLimitMiddleware

log = logging.getLogger(__name__)


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
    estop_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="asab-estop"))
    """A thread of its own for ``POST /estop``: never queued behind requests in the shared
    thread pool."""
    sessions: Any = field(default_factory=lambda: _sessions())
    """The live page's browser sessions (:class:`asab.servers.live.Sessions`)."""
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the servers stop (the live page's event streams end then)."""

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"ServerContext(bench={self.bench.config.name!r})"


def _sessions():
    from asab.servers.live import Sessions

    return Sessions()


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


ESTOP_DEFAULT_REASON = "emergency stop via HTTP"
"""Latched when ``POST /estop`` carries no usable reason."""

ESTOP_BODY_LIMIT = 4096
"""Bytes of a ``POST /estop`` body read for the reason (a longer body: default reason)."""


class EstopRequest(Strict):
    """Body of ``POST /estop`` (optional). It only supplies the reason: the pumps stop before
    it is read, and a body that is not valid JSON or breaks these rules stops them all the
    same, with :data:`ESTOP_DEFAULT_REASON`."""

    reason: str = Field(default=ESTOP_DEFAULT_REASON, min_length=1, max_length=200,
                        pattern=r"^[^\x00-\x1f\x7f]+$",
                        description="why (logged and shown in status)")


class EstopResponse(BaseModel):
    estop: str | None = Field(description="latched reason, or null after a reset")
    cancelled_jobs: list[str] = Field(default_factory=list, description="job ids asked to stop")
    reason_ignored: str | None = Field(
        default=None, description="why the body's reason was not used (the pumps were stopped "
        "anyway and the default reason latched), or null")


def estop_reason(raw: bytes | None) -> tuple[str, str | None]:
    """The reason to latch from a raw ``POST /estop`` body; never raises.

    Args:
        raw: the body, or ``None`` when it was longer than :data:`ESTOP_BODY_LIMIT` bytes.

    Returns:
        ``(reason, problem)``: the body's reason and ``None``, or
        :data:`ESTOP_DEFAULT_REASON` and why the body was not used (``None`` for no body).
    """
    if raw is None:
        return ESTOP_DEFAULT_REASON, f"body longer than {ESTOP_BODY_LIMIT} bytes"
    if not raw.strip():
        return ESTOP_DEFAULT_REASON, None
    try:
        return EstopRequest.model_validate_json(raw).reason, None
    except (ValidationError, ValueError, RecursionError) as exc:
        errors = exc.errors() if isinstance(exc, ValidationError) else []
        if not errors:
            return ESTOP_DEFAULT_REASON, "body not understood"
        where = ".".join(str(part) for part in errors[0]["loc"]) or "body"
        return ESTOP_DEFAULT_REASON, f"{where}: {errors[0]['msg']}"


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` when longer than ``limit`` bytes or cut off."""
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                return None
    except ClientDisconnect:
        return None
    return bytes(data)


_ESTOP_OPENAPI: dict[str, Any] = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": EstopRequest.model_json_schema()}}}}
"""The documented (optional) body of ``POST /estop``; the route reads it raw."""


JobId = Annotated[str, Path(min_length=1, max_length=64, description="job id")]


def bearer(ctx: ServerContext):
    """A FastAPI dependency that accepts only ``Authorization: Bearer <ctx.token>`` (else 401);
    it declares the security scheme in OpenAPI (the middleware enforces it first)."""
    scheme = HTTPBearer(auto_error=False, description="token from [servers] or $ASAB_SERVER_TOKEN")

    async def check(request: Request,
                    cred: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if request.scope.get(AUTH_KEY) in ("session", "query"):  # checked by the middleware
            return
        if cred is None or not _token_ok(f"Bearer {cred.credentials}".encode(), ctx.token):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
    return check


def _token_ok(header: bytes, token: str) -> bool:
    scheme, _, credentials = header.partition(b" ")
    return scheme.lower() == b"bearer" and secrets.compare_digest(credentials.strip(),
                                                                   token.encode())


def _query_token_ok(query: bytes, token: str) -> bool:
    values = parse_qs(query.decode("latin-1")).get("token", [])
    return any(secrets.compare_digest(v.encode(), token.encode()) for v in values)


AUTH_KEY = "asab.auth"
"""Scope key the auth middleware sets to how a request was authenticated: ``"header"``,
``"query"`` (docs and the page's first visit) or ``"session"`` (the page's cookie)."""


def _authorized(scope: Scope, token: str, sessions=None) -> str | None:
    """How the request is authenticated (see :data:`AUTH_KEY`), or None."""
    headers = dict(scope["headers"])
    if _token_ok(headers.get(b"authorization", b""), token):
        return "header"
    path = scope["path"]
    if (is_docs_path(path) or (sessions is not None and path == "/")) and \
            _query_token_ok(scope.get("query_string", b""), token):
        return "query"
    if sessions is None:
        return None
    from asab.servers.live import PAGE_HEADER, cookie_session

    sid = cookie_session(headers, (scope.get("server") or (None, None))[1])
    if sid is None or not sessions.valid(sid):
        return None
    if scope.get("method") in ("GET", "HEAD"):
        return "session"
    # the one thing the page does: its e-stop button (with the page's header, which another
    # origin cannot send without a CORS pre-flight that is never granted)
    if scope.get("method") == "POST" and path in PAGE_ACTIONS and \
            headers.get(PAGE_HEADER.encode()) == b"1":
        return "session"
    return None


PAGE_ACTIONS = frozenset({"/estop"})
"""Paths the live page's session cookie may POST to (with its header); everything else that
acts needs the token."""


class BearerAuthMiddleware:
    """ASGI middleware: 401 for every request without the right bearer token, before the
    body is read or validated (so an unauthenticated caller learns nothing about it).
    The documentation pages, their assets and ``/openapi.json`` also accept the token as
    ``?token=`` (:func:`asab.servers.docs.is_docs_path`); every other path needs the header.
    With ``sessions`` (the actions server's live page, :mod:`asab.servers.live`) the page
    ``/`` takes ``?token=`` too, and a valid session cookie stands for the token: for GET,
    and for ``POST /estop`` (:data:`PAGE_ACTIONS`) with the header ``X-Asab-Page: 1``."""

    def __init__(self, app: ASGIApp, token: str, sessions=None) -> None:
        self.app, self.token, self.sessions = app, token, sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            how = _authorized(scope, self.token, self.sessions)
            if how is None:
                message = "missing or wrong bearer token"
                if self.sessions is not None and scope["path"] == "/":
                    message += ("; the live page opens once with the token in the address, "
                                "/?token=<token>, then keeps a session cookie (sessions end "
                                "when the server stops)")
                body = {"error": {"type": "Unauthorized", "message": message}}
                await JSONResponse(body, status_code=401,
                                   headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
            scope[AUTH_KEY] = how
        await self.app(scope, receive, send)


def make_app(ctx: ServerContext, name: str, description: str, *, page: bool = False) -> FastAPI:
    """A FastAPI app with auth on every route (:class:`BearerAuthMiddleware`, also declared
    as the OpenAPI security scheme), the shared error mapping, and the status, jobs and
    emergency-stop routes; offline docs at ``/docs?token=...`` and ``/redoc?token=...`` (token
    needed there too; :mod:`asab.servers.docs`)."""
    app = FastAPI(title=f"asab {name} server", version=asab.__version__, description=description,
                  dependencies=[Depends(bearer(ctx))], responses=ERROR_RESPONSES,
                  docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimitMiddleware, default=MAX_BODY, per_path={"/estop": None})
    app.add_middleware(BearerAuthMiddleware, token=ctx.token,
                       sessions=ctx.sessions if page else None)
    install_error_handlers(app)
    app.include_router(_shared_routes(ctx, name))
    add_docs_routes(app, app.title)
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

    @r.post("/estop", tags=["safety"], openapi_extra=_ESTOP_OPENAPI)
    async def emergency_stop(request: Request) -> EstopResponse:
        """Stop every pump now, cancel every job, refuse motion until ``/estop/reset``.

        Never refused once authenticated: the pumps stop before the body is read; a body
        that is not a valid :class:`EstopRequest` only costs its reason (the default is
        latched and ``reason_ignored`` says why).
        """
        loop = asyncio.get_running_loop()
        cancelled = await loop.run_in_executor(ctx.estop_executor, ctx.jobs.emergency_stop,
                                               ESTOP_DEFAULT_REASON)
        reason, problem = estop_reason(await _read_body(request, ESTOP_BODY_LIMIT))
        if problem is not None:
            log.warning("emergency stop: reason not used (%s)", problem)
        elif reason != ESTOP_DEFAULT_REASON and ctx.bench.estop is not None:
            ctx.bench.estop = reason
            log.warning("EMERGENCY STOP reason: %s", reason)
        return EstopResponse(estop=ctx.bench.estop, cancelled_jobs=cancelled,
                             reason_ignored=problem)

    @r.post("/estop/reset", tags=["safety"])
    def reset_estop() -> EstopResponse:
        """Release the emergency-stop latch (pumps stay stopped)."""
        ctx.bench.reset_estop()
        return EstopResponse(estop=None)

    return r
