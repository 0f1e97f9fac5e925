"""An in-process fake of the FINALES2 1.1.0 broker, quirks included (shared docs:
finales2_api.md), for tests of the tenant side.

``make_fake_finales(...)`` returns a :class:`FakeFinales`: an ASGI app (FastAPI inside, with
a fault-injecting layer in front) plus plain-Python test controls. Use it

- in-process: ``httpx.Client(transport=fake.transport())`` (a sync transport around
  ``httpx.ASGITransport``; "connection refused" and "dropped connection" become the httpx
  errors a real network gives), or
- on loopback: ``with serve_fake(fake) as live: live.url`` (uvicorn in a thread; ``live.stop()``
  / ``live.start()`` give a real "connection refused" and a restart on the same port).

Behaviour as documented, including the quirks: form-only login (JSON → 422); JWT-like tokens
``{"sub", "exp"}`` (HMAC-signed with a per-"boot" secret) with a configurable lifetime; the
same 401 for a bad password and an expired/invalid token; 404 for an unknown user; ``null``
for unknown ids; an unordered pending list; ``update_status`` using the QUERY ``request_id``;
non-exclusive reservation; results stored for any request, duplicates too; a posted result
resolves its request; a resolved request can be set back to pending; 500 text/plain for
schema-invalid parameters on ``POST /requests/`` and ``POST /results/`` (vendored
specification schemas); NaN stored as null; a trailing-slash mismatch answers 307.
Aligned with what FINALES2 1.1.0 answers where it matters to a client: 400 JSON for an
unknown capability on ``POST /requests/``, an unknown id in ``update_status``, a status a
client may not set (``resolved``; ``original`` for a result), a result for an unknown request
and a request id that is not a UUID; ``WWW-Authenticate: Bearer`` on every 401; an integer
JWT ``exp``; tokens that survive a restart (the signing secret is the broker's configuration);
and after an unhandled 500 the connection is closed without ``Connection: close``, so the
next request sent on it fails (live: a real closed socket; in-process: the next request
raises the httpx error a reset gives). Results are indexed by request, as a database would,
so look-ups per request do not scan. An unsolicited result is stored as given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import secrets
import socket
import threading
import time
import uuid as uuidlib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

import anyio
import httpx
import jsonschema
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

SCHEMAS = Path(__file__).resolve().parents[1] / "asab" / "schemas" / "finales2" / "capabilities"
BAD_LOGIN = "Authentication failed. Wrong username or password."
NO_USER = "No user with this username was found."
RESULT_POSTS = ("/results/", "/results/post_unsolicited_result")


class ConnectionDropped(Exception):
    """Raised by the fake after it stored a result, to cut the connection mid-answer."""


class RequestBody(BaseModel):
    quantity: str
    methods: list[str]
    parameters: dict[str, dict[str, Any]]
    tenant_uuid: str


class ResultBody(BaseModel):
    data: dict[str, Any]
    quantity: str
    method: list[str]
    parameters: dict[str, dict[str, Any]]
    tenant_uuid: str
    request_uuid: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _nan_to_null(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_null(v) for v in value]
    return value


class FakeFinales:
    """The fake broker: ``await fake(scope, receive, send)`` is its ASGI entry.

    Inspect: ``requests`` (uuid → RequestInfo dict), ``results`` (ResultInfo dicts in store
    order), ``status_log`` ((request_id, new_status, message)), ``calls`` ((method, path)
    of every HTTP call), ``logins`` (successful logins).
    """

    def __init__(self, *, users: dict[str, str], tenants: list[dict[str, Any]],
                 token_lifetime: float, clock: Any, capabilities: list[str],
                 invalidate_tokens_on_restart: bool, seed: int):
        self.users, self.tenants, self.token_lifetime = dict(users), tenants, token_lifetime
        self.clock, self.invalidate_tokens_on_restart = clock, invalidate_tokens_on_restart
        self.capabilities = {c: json.loads((SCHEMAS / f"{c}.json").read_text())
                             for c in capabilities}
        self.requests: dict[str, dict[str, Any]] = {}
        self.results: list[dict[str, Any]] = []
        self.results_by_request: dict[str, list[dict[str, Any]]] = {}
        self.live = False  # set by LiveFinales: a 500 then closes the real connection
        self._close_after = False
        self._reset_next = False
        self.status_log: list[tuple[str, str, str]] = []
        self.calls: list[tuple[str, str]] = []
        self.logins = 0
        self.down: Literal["refused", "503"] | None = None
        self._fail: list[int] = []
        self._drops = 0
        self._delays: list[float] = []
        self._secret = secrets.token_bytes(16)
        self._rng = random.Random(seed)
        self.api = _build_api(self)

    # -- test controls -------------------------------------------------------------------
    def go_down(self, mode: Literal["refused", "503"] = "refused") -> None:
        """Refuse connections (in-process transport only; live: ``LiveFinales.stop``) or 503."""
        self.down = mode

    def come_up(self) -> None:
        """Answer again."""
        self.down = None

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` HTTP calls with ``status`` (text/plain) without handling them."""
        self._fail = [status] * n

    def delay_next(self, n: int, seconds: float) -> None:
        """Hold each of the next ``n`` HTTP calls ``seconds`` before handling it (timeouts)."""
        self._delays = [seconds] * n

    def drop_after_store(self, n: int = 1) -> None:
        """For the next ``n`` result posts: store the result, then cut the connection."""
        self._drops = n

    def restart(self, invalidate_tokens: bool | None = None) -> None:
        """Reboot: data kept, faults cleared, tokens invalid if so configured."""
        if self.invalidate_tokens_on_restart if invalidate_tokens is None else invalidate_tokens:
            self._secret = secrets.token_bytes(16)
        self.down, self._fail, self._drops, self._delays = None, [], 0, []

    def add_request(self, parameters: dict[str, Any], *, quantity: str = "density",
                    method: str = "vibrating_tube_densimetry", status: str = "pending",
                    tenant_uuid: str = "00000000-0000-4000-8000-000000000001") -> str:
        """Store a request directly (no schema check, so invalid ones can be planted)."""
        body = {"quantity": quantity, "methods": [method], "parameters": {method: parameters},
                "tenant_uuid": tenant_uuid}
        return self._store_request(body, status)

    def results_for(self, request_id: str) -> list[dict[str, Any]]:
        """Every stored result (ResultInfo dicts) for a request, in store order."""
        return list(self.results_by_request.get(request_id, []))

    def store_result(self, body: dict[str, Any], status: str = "original") -> str:
        """Store a result directly (as the broker does after its checks); returns its uuid."""
        rid = str(uuidlib.uuid4())
        info = {"uuid": rid, "ctime": self._now(), "status": status, "result": _nan_to_null(body)}
        self.results.append(info)
        self.results_by_request.setdefault(info["result"]["request_uuid"], []).append(info)
        return rid

    def server_error(self) -> PlainTextResponse:
        """An unhandled server error: 500 text/plain, then the connection is closed."""
        self._close_after = True
        return PlainTextResponse("Internal Server Error", 500)

    def transport(self) -> httpx.BaseTransport:
        """A sync httpx transport that calls this app in-process."""
        return _InProcessTransport(self)

    # -- internals -----------------------------------------------------------------------
    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock()).isoformat()

    def _store_request(self, body: dict[str, Any], status: str = "pending") -> str:
        rid = str(uuidlib.uuid4())
        self.requests[rid] = {"uuid": rid, "ctime": self._now(), "status": status,
                              "request": _nan_to_null(body)}
        return rid

    def _token(self, user: str) -> str:
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        exp = int(self.clock() + self.token_lifetime)  # FINALES2: integer epoch seconds
        claims = _b64(json.dumps({"sub": user, "exp": exp}).encode())
        sig = hmac.new(self._secret, f"{head}.{claims}".encode(), hashlib.sha256).digest()
        return f"{head}.{claims}.{_b64(sig)}"

    def _user(self, token: str) -> str:
        try:
            head, claims, sig = token.split(".")
            good = hmac.new(self._secret, f"{head}.{claims}".encode(), hashlib.sha256).digest()
            data = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        except ValueError:
            raise HTTPException(401, BAD_LOGIN, headers=BEARER) from None
        if not hmac.compare_digest(_b64(good), sig) or self.clock() >= data.get("exp", 0):
            raise HTTPException(401, BAD_LOGIN, headers=BEARER)
        if data.get("sub") not in self.users:
            raise HTTPException(404, NO_USER)
        return data["sub"]

    def _schema_ok(self, quantity: str, method: str, params: Any) -> bool:
        cap = self.capabilities.get(f"{quantity}_{method}")
        if cap is None:
            return False
        return jsonschema.Draft202012Validator(cap["json_schema_specifications"]).is_valid(params)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.api(scope, receive, send)
        self.calls.append((scope["method"], scope["path"]))
        status = 503 if self.down == "503" else (self._fail.pop(0) if self._fail else None)
        if status is not None:
            return await PlainTextResponse("Service Unavailable", status)(scope, receive, send)
        if self._delays:
            await anyio.sleep(self._delays.pop(0))
        if self._drops and scope["method"] == "POST" and scope["path"] in RESULT_POSTS:
            self._drops -= 1

            async def swallow(message: dict) -> None:
                return None

            await self.api(scope, receive, swallow)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", b"64")]})
            raise ConnectionDropped("fake FINALES2 dropped the connection after storing")
        await self.api(scope, receive, send)
        if self._close_after:
            self._close_after = False
            if self.live:  # uvicorn closes a connection whose app raises after responding
                raise ConnectionDropped("fake FINALES2 closed the connection after a 500")
            self._reset_next = True


BEARER = {"WWW-Authenticate": "Bearer"}


def _require_uuid(value: str) -> None:
    try:
        uuidlib.UUID(value)
    except ValueError:
        raise HTTPException(400, f"{value!r} is not a UUID.") from None


def _build_api(fake: FakeFinales) -> FastAPI:
    app = FastAPI(title="fake FINALES2", version="1.1.0")

    def auth(request: Request) -> str:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})
        return fake._user(header[7:].strip())

    @app.post("/user_management/authenticate")
    async def authenticate(request: Request) -> Any:
        ctype = request.headers.get("content-type", "")
        form = parse_qs((await request.body()).decode(errors="replace"))
        if not ctype.startswith("application/x-www-form-urlencoded") or \
                "username" not in form or "password" not in form:
            missing = [{"type": "missing", "loc": ["body", k], "msg": "Field required"}
                       for k in ("username", "password")]
            return JSONResponse({"detail": missing}, 422)
        user, password = form["username"][0], form["password"][0]
        if user not in fake.users:
            raise HTTPException(404, NO_USER)
        if not hmac.compare_digest(fake.users[user], password):
            raise HTTPException(401, BAD_LOGIN, headers=BEARER)
        fake.logins += 1
        return {"access_token": fake._token(user), "token_type": "bearer"}

    @app.get("/")
    def hello(user: str = Depends(auth)) -> str:
        return "Hello! This is FINALES2."

    @app.get("/pending_requests/")
    def pending(quantity: str | None = None, method: str | None = None,
                user: str = Depends(auth)) -> list[dict]:
        out = [r for r in fake.requests.values() if r["status"] == "pending"
               and quantity in (None, r["request"]["quantity"])
               and (method is None or method in r["request"]["methods"])]
        fake._rng.shuffle(out)
        return out

    @app.get("/requests/{request_id}")
    def get_request(request_id: str, user: str = Depends(auth)) -> Any:
        _require_uuid(request_id)
        return fake.requests.get(request_id)

    @app.post("/requests/")
    def post_request(body: RequestBody, user: str = Depends(auth)) -> Any:
        if not all(f"{body.quantity}_{m}" in fake.capabilities for m in body.methods):
            raise HTTPException(400, f"No capability {body.quantity} by {body.methods}.")
        if not all(fake._schema_ok(body.quantity, m, body.parameters.get(m)) for m in body.methods):
            return fake.server_error()
        return fake._store_request(body.model_dump())

    @app.post("/requests/{path_id}/update_status/")
    def update_status(path_id: str, request_id: str, new_status: str,
                      status_change_message: str = "", user: str = Depends(auth)) -> Any:
        if new_status not in ("pending", "reserved", "retracted"):
            raise HTTPException(400, f"Status {new_status} cannot be set.")
        if request_id not in fake.requests:
            raise HTTPException(400, f"No request with uuid {request_id}.")
        fake.requests[request_id]["status"] = new_status  # no guard: resolved → pending works
        fake.status_log.append((request_id, new_status, status_change_message))
        return f"Successful change of status to {new_status}"

    _result_routes(app, fake, auth)
    _catalogue_routes(app, fake, auth)
    return app


def _result_routes(app: FastAPI, fake: FakeFinales, auth: Any) -> None:
    def store(body: ResultBody) -> Any:
        method = body.method[0] if len(body.method) == 1 else None
        if method is None or not fake._schema_ok(body.quantity, method,
                                                 body.parameters.get(method)):
            return fake.server_error()
        rid = fake.store_result(body.model_dump())
        request = fake.requests.get(body.request_uuid)
        if request is not None:  # any status, even retracted or resolved (quirk 3)
            request["status"] = "resolved"
        return rid

    @app.post("/results/")
    def post_result(body: ResultBody, user: str = Depends(auth)) -> Any:
        if body.request_uuid not in fake.requests:
            raise HTTPException(400, f"No request with uuid {body.request_uuid}.")
        return store(body)

    @app.post("/results/post_unsolicited_result")
    def post_unsolicited(body: ResultBody, user: str = Depends(auth)) -> Any:
        return store(body)

    @app.get("/results/{result_id}")
    def get_result(result_id: str, user: str = Depends(auth)) -> Any:
        return next((r for r in fake.results if r["uuid"] == result_id), None)

    @app.post("/results/{path_id}/update_status/")
    def result_status(path_id: str, result_id: str, new_status: str,
                      user: str = Depends(auth)) -> Any:
        if new_status not in ("deleted", "amended"):
            raise HTTPException(400, f"Status {new_status} cannot be set.")
        found = next((r for r in fake.results if r["uuid"] == result_id), None)
        if found is None:
            raise HTTPException(400, f"No result with uuid {result_id}.")
        found["status"], found["ctime"] = new_status, fake._now()
        return f"Successful change of status to {new_status}"

    @app.get("/results_requested/{request_id}")
    def first_result(request_id: str, user: str = Depends(auth)) -> Any:
        _require_uuid(request_id)
        found = fake.results_by_request.get(request_id)
        return found[0] if found else None

    @app.get("/results_requested/")
    def all_results(quantity: str | None = None, method: str | None = None,
                    user: str = Depends(auth)) -> list[dict]:
        return [r for r in fake.results if quantity in (None, r["result"]["quantity"])
                and method in (None, r["result"]["method"][0])]


def _catalogue_routes(app: FastAPI, fake: FakeFinales, auth: Any) -> None:
    @app.get("/capabilities/")
    def capabilities(currently_available: bool = Query(True),
                     user: str = Depends(auth)) -> list[dict]:
        keys = ("quantity", "method", "json_schema_specifications", "json_schema_result_output")
        return [{k: cap[k] for k in keys} for cap in fake.capabilities.values()]

    @app.get("/limitations/")
    def limitations(currently_available: bool = Query(True),
                    user: str = Depends(auth)) -> list[dict]:
        out: dict[tuple[str, str], list] = {}
        for tenant in fake.tenants:
            for lim in tenant.get("limitations", []):
                out.setdefault((lim["quantity"], lim["method"]), []).append(lim["limitations"])
        return [{"quantity": q, "method": m, "limitations": v} for (q, m), v in out.items()]

    @app.get("/tenants/")
    def tenants(user: str = Depends(auth)) -> list[dict]:
        return fake.tenants


class _InProcessTransport(httpx.BaseTransport):
    """Sync httpx transport calling the fake's ASGI app on a short-lived event loop."""

    def __init__(self, fake: FakeFinales):
        self._fake = fake
        self._asgi = httpx.ASGITransport(app=fake)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._fake.down == "refused":
            raise httpx.ConnectError("[Errno 111] Connection refused (fake FINALES2 down)",
                                     request=request)
        if self._fake._reset_next:  # the server closed the kept-alive connection after a 500
            self._fake._reset_next = False
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                            request=request)
        try:
            return anyio.run(self._handle, request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(f"peer closed connection: {exc}",
                                            request=request) from None

    def close(self) -> None:
        """The client closed its connections: the next request goes on a fresh one."""
        self._fake._reset_next = False

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        content = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=content,
                              request=request)


def make_fake_finales(*, users: dict[str, str] | None = None,
                      tenants: list[dict[str, Any]] | None = None,
                      token_lifetime: float = 24 * 3600.0, clock: Any = time.time,
                      capabilities: tuple[str, ...] = ("density_vibrating_tube_densimetry",
                                                       "electrolyte_flow"),
                      invalidate_tokens_on_restart: bool = False, seed: int = 0) -> FakeFinales:
    """A fresh fake broker.

    Args:
        users: username → password (default ``{"asab": "asab-password"}``).
        tenants: ``GET /tenants/`` entries (default: one active "ASAB_tenant" with uuid
            ``TENANT_UUID``).
        token_lifetime: s from login to the token's ``exp`` (FINALES2 default 24 h).
        clock: epoch seconds (tests advance it to expire tokens).
        capabilities: vendored capability files (without ``.json``) the broker offers.
        invalidate_tokens_on_restart: :meth:`FakeFinales.restart` changes the signing key
            (FINALES2 keeps it in its configuration, so by default tokens survive).
        seed: seed of the pending-list shuffle.
    """
    return FakeFinales(users=users or {"asab": "asab-password"},
                       tenants=tenants if tenants is not None else [
                           {"tenant_uuid": TENANT_UUID, "name": "ASAB_tenant", "limitations": [],
                            "contact_person": "lab@example.org", "is_active": True}],
                       token_lifetime=token_lifetime, clock=clock,
                       capabilities=list(capabilities),
                       invalidate_tokens_on_restart=invalidate_tokens_on_restart, seed=seed)


TENANT_UUID = "5b2f8a9e-7c1d-4e3f-9a6b-0c8d7e6f5a4b"
"""The default fake tenant's uuid."""


class LiveFinales:
    """The fake under uvicorn on a loopback port in a thread; ``stop``/``start`` keep the port."""

    def __init__(self, fake: FakeFinales, host: str = "127.0.0.1"):
        self.fake, self.host, self.port = fake, host, 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> LiveFinales:
        """Listen (on the previous port if restarting) and wait until uvicorn is up."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.fake, lifespan="off", log_config=None, log_level="warning",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self.fake.live = True
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"fake-finales-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("fake FINALES2 did not start")
            time.sleep(0.01)
        self._sock = sock  # owned by uvicorn's event loop until stop()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut uvicorn down (connections are then refused) and join its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("fake FINALES2 did not stop")
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def restart(self, invalidate_tokens: bool | None = None) -> None:
        """Stop, :meth:`FakeFinales.restart`, start on the same port."""
        self.stop()
        self.fake.restart(invalidate_tokens)
        self.start()

    def __enter__(self) -> LiveFinales:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_fake(fake: FakeFinales | None = None, **kwargs: Any) -> LiveFinales:
    """Start ``fake`` (or ``make_fake_finales(**kwargs)``) on a free loopback port."""
    return LiveFinales(fake or make_fake_finales(**kwargs)).start()
