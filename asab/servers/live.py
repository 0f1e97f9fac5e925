"""The live bench page of the actions server: ``GET /`` (plain HTML), its script and style
(files of this package, ``asab/servers/static/``; no other host is named), the tubing network
as JSON (``/live/graph``), a state snapshot (``/live/state``) and the stream of snapshots
(``/live/events``, server-sent events).

Authentication as everywhere (:class:`asab.servers.common.BearerAuthMiddleware`): the header,
or — since a browser cannot send a header to a page it opens — the token once in the page's
URL (``/?token=...``), which answers with a redirect to ``/`` and a session cookie for that
browser session (HttpOnly, SameSite=Strict; the session lives as long as the server). The
page's own requests carry the cookie; a request that changes something (``POST /estop``) is
taken on the cookie only with the header ``X-Asab-Page: 1``, which a page of another origin
cannot add without a CORS pre-flight this server never grants.

The stream samples the bench at most every :data:`SAMPLE_INTERVAL` s (no device is moved or
waited for: pump fill levels and valve positions are read from the drivers, everything else
from the bench ledger and the job manager) and sends a snapshot when it differs from the one
sent before, and a heartbeat every :data:`HEARTBEAT` s otherwise.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import (
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.concurrency import run_in_threadpool

from asab.servers.common import AUTH_KEY
from asab.servers.jobs import JobInfo

log = logging.getLogger(__name__)

COOKIE = "asab_live"
"""Prefix of the page's session cookie, whose name is ``asab_live_<port>``: browsers send a
cookie to every port of a host (RFC 6265 §8.5), so two benches served on one machine keep
their sessions apart, and no other local server is sent a usable one."""


def cookie_name(port: int | None) -> str:
    """The session cookie's name for the actions server on ``port``."""
    return f"{COOKIE}_{port}" if port else COOKIE

PAGE_HEADER = "x-asab-page"
"""Header the page's script adds to requests that act (the cookie alone does not do)."""

SAMPLE_INTERVAL = 0.5
"""s between two looks at the bench by the event stream (at most 2 snapshots a second)."""

HEARTBEAT = 10.0
"""s without a change after which the stream sends a heartbeat event."""

HISTORY = 50
"""Finished jobs a snapshot lists (newest first)."""

MAX_SESSIONS = 256
"""Browser sessions remembered; the oldest is forgotten beyond it (that browser then opens
the page with the token again)."""

STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


class Sessions:
    """The page's browser sessions: random ids handed out as cookies (thread-safe)."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def new(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._ids[sid] = None
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)
        return sid

    def valid(self, sid: str) -> bool:
        with self._lock:
            return any(secrets.compare_digest(sid, known) for known in self._ids)


def cookie_session(headers: dict[bytes, bytes], port: int | None = None) -> str | None:
    """The session id in a request's ``Cookie`` header (the cookie of the server on
    ``port``, :func:`cookie_name`), or None."""
    raw = headers.get(b"cookie", b"").decode("latin-1")
    want = cookie_name(port)
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        if name == want and value:
            return value
    return None


def _static(name: str) -> str:
    return resources.files("asab.servers").joinpath("static", name).read_text(encoding="utf-8")


def graph_json(bench) -> dict[str, Any]:
    """The tubing network for drawing: node positions (layout units, y up) and kinds, the
    tubes (segment label, directed or not; undirected pairs once) and each valve's common
    port and outer ports (node → position index), and the stock solutions in configuration
    order (``liquids``: the page gives each its colour in that order, the same on every load)."""
    from asab.tubing.draw import layout, vessel_kinds

    graph = bench.graph
    pos = layout(graph)
    kinds = vessel_kinds(bench.config)
    ports = {n for v in graph.valves.values() for n in (v.common, *v.positions)}
    nodes = [{"name": n, "x": round(x, 4), "y": round(y, 4),
              "kind": "port" if n in ports else kinds.get(n, "other")}
             for n, (x, y) in sorted(pos.items())]
    seen: set[frozenset[str]] = set()
    tubes = []
    for u, v, data in graph.graph.edges(data=True):
        if data["valve"] is not None or frozenset((u, v)) in seen:
            continue
        seen.add(frozenset((u, v)))
        tubes.append({"from": u, "to": v, "segment": data["label"],
                      "directed": bool(data["directed"])})
    valves = {name: {"common": valve.common, "ports": dict(valve.positions)}
              for name, valve in sorted(graph.valves.items())}
    liquids = [st.name for st in bench.config.stocks]
    return {"bench": bench.config.name, "nodes": nodes, "tubes": tubes, "valves": valves,
            "liquids": liquids}


def results_rows(jobs: list[JobInfo], history=None) -> list[dict[str, Any]]:
    """The measured samples so far, newest first: one row per succeeded measure job with
    ``job`` (id), ``sample``, ``finished`` (ISO 8601), ``composition`` (name → mole fraction
    predicted in the cell, or null), ``density`` (g/cm³, mean of valid repetitions) and
    ``viscosity`` (mPa·s). The page's results table shows exactly this (swap this function
    for another source of results, the table follows)."""
    rows = []
    for job in reversed(jobs):
        if job.kind != "measure" or job.state != "succeeded" or not job.result:
            continue
        extra = history.extra(job.id) if history is not None else {}
        rows.append({"job": job.id, "sample": job.result.get("sample"),
                     "finished": job.finished, "composition": extra.get("composition"),
                     "density": (job.result.get("density") or {}).get("mean"),
                     "viscosity": (job.result.get("viscosity") or {}).get("mean")})
    return rows


class LiveState:
    """Snapshots of one bench for the page, computed at most every
    :data:`SAMPLE_INTERVAL` s however many pages watch (thread-safe)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._at = -1e9
        self._text = ""
        self._graph: dict[str, Any] | None = None

    def graph(self) -> dict[str, Any]:
        if self._graph is None:
            self._graph = graph_json(self.ctx.bench)
        return self._graph

    def snapshot_text(self) -> str:
        """The current snapshot as JSON text (see :meth:`snapshot`), reused for
        :data:`SAMPLE_INTERVAL` s unless a job started, changed step or ended since."""
        with self._lock:
            now = time.monotonic()
            jobs_changed = self.ctx.jobs.changed.is_set()
            if jobs_changed or now - self._at >= SAMPLE_INTERVAL * 0.9:
                self.ctx.jobs.changed.clear()
                self._text = json.dumps(self.snapshot(), separators=(",", ":"), default=str)
                self._at = now
            return self._text

    def snapshot(self) -> dict[str, Any]:
        """What the page shows: bench clock (s), e-stop and out-of-service reasons, valve
        positions, every pump (fill mL, capacity mL, moving, primed, main content), what
        fills each line (segment → main origin and mL), vessel levels (mL) and the balance
        load (g) from the ledger, running and finished jobs, and :func:`results_rows`."""
        from asab.ledger import operator

        ctx = self.ctx
        bench = ctx.bench
        ledger = bench.ledger.current()
        status = operator.status(bench.config, ledger, events=5)
        syringes = {s["pump"]: s for s in status["syringes"]}
        pumps = []
        for name in sorted(bench.pumps):
            drv = bench.pumps[name]
            content = syringes.get(name, {}).get("content", {})
            pumps.append({"name": name, "node": bench.config.pump(name).node,
                          "fill": _num(drv.fill_level), "capacity": drv.volume_max,
                          "pumping": bool(_num(drv.is_pumping)), "primed": name in bench.primed,
                          "content": max(content, key=content.get) if content else None})
        valves = {name: _num(drv.position) for name, drv in sorted(bench.valves.items())}
        jobs = ctx.jobs.list()
        running = [j.model_dump(mode="json", exclude={"result"}) for j in jobs
                   if j.state == "running"]
        finished = [j.model_dump(mode="json", exclude={"result"})
                    for j in reversed(jobs) if j.state != "running"][:HISTORY]
        return {
            "bench": bench.config.name, "bench_time": round(bench.clock.now(), 1),
            "estop": bench.estop, "out_of_service": bench.out_of_service,
            "waiting": status["waiting"], "valves": valves, "pumps": pumps,
            "lines": {ln["segment"]: {"main": line_liquid(ln["main"], ln["content"]),
                                      "volume": ln["volume"]}
                      for ln in status["lines"]},
            "vessels": status["vessels"], "balance": status["balance"],
            "events": status["events"], "running": running, "history": finished,
            "queue": [],
            "results": results_rows(jobs, ctx.jobs.history),
            "sent": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        }


MIXTURE = "mixture"
"""What the page shows for a line holding several liquids, none of them ≥ :data:`PURE`."""

PURE = 0.9
"""Share of a line's liquid one origin needs for the line to be shown as that origin."""


def line_liquid(main: str, content: dict[str, float]) -> str:
    """What the page colours a line by: the ledger's main origin (``main``, what fills most
    of it: a stock, the solvent, gas), or :data:`MIXTURE` when its liquid (``content``,
    origin → mL, gas left out) has no origin with at least :data:`PURE` of it."""
    from asab.ledger.liquid import GAS

    liquid = {k: v for k, v in content.items() if k != GAS and v > 0}
    if main == GAS or len(liquid) < 2:
        return main
    return main if max(liquid.values()) >= PURE * sum(liquid.values()) else MIXTURE


def _num(read):
    """A driver reading, or None when the device does not answer (the page shows '?')."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - a snapshot never fails for one device
        log.debug("live snapshot: %s", exc)
        return None


def add_live_routes(app: FastAPI, ctx) -> None:
    """``/``, ``/live/app.js``, ``/live/style.css``, ``/live/graph``, ``/live/state`` and
    ``/live/events`` on the actions app (see the module docstring)."""
    live = LiveState(ctx)

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        if request.scope.get(AUTH_KEY) == "query":  # the right ?token=: trade it for a cookie
            response = RedirectResponse("/", status_code=303)
            port = (request.scope.get("server") or (None, None))[1]
            response.set_cookie(cookie_name(port), ctx.sessions.new(), httponly=True,
                                samesite="strict", path="/")
            return response
        if "token" in request.query_params:  # a stale or wrong token beside a valid cookie
            return RedirectResponse("/", status_code=303)
        html = _static("live.html").replace("{{bench}}", _escape(ctx.bench.config.name))
        return Response(html, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store"})

    for name, media in STATIC.items():
        def serve_static(name: str = name, media: str = media) -> Response:
            return Response(_static(name), media_type=media,
                            headers={"Cache-Control": "no-cache"})
        app.add_api_route(f"/live/{name}", serve_static, methods=["GET"],
                          include_in_schema=False)

    @app.get("/live/graph", tags=["live"])
    def get_graph() -> dict[str, Any]:
        """The tubing network for drawing (node positions in layout units, y up)."""
        return live.graph()

    @app.get("/live/state", tags=["live"])
    def get_state() -> Response:
        """One snapshot of what the live page shows."""
        return Response(live.snapshot_text(), media_type="application/json")

    @app.get("/live/events", include_in_schema=False)  # a stream without end: not for schema fuzzers
    async def get_events(request: Request) -> StreamingResponse:
        """Server-sent events: ``state`` (a snapshot, when it changed; at most 2 a second)
        and ``heartbeat`` (every 10 s without a change). Ends when the server stops."""
        async def stream():
            last, sent = None, time.monotonic()
            yield "retry: 2000\n\n"
            while not ctx.stopping.is_set():
                text = await run_in_threadpool(live.snapshot_text)
                now = time.monotonic()
                if text != last:
                    yield f"event: state\ndata: {text}\n\n"
                    last, sent = text, now
                elif now - sent >= HEARTBEAT:
                    yield f"event: heartbeat\ndata: {json.dumps({'t': now})}\n\n"
                    sent = now
                await asyncio.sleep(SAMPLE_INTERVAL)
                if await request.is_disconnected():
                    return
        return StreamingResponse(stream(), media_type="text/event-stream", headers={
            "Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))
