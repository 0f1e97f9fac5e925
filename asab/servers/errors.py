"""The one place where exceptions become HTTP responses (every server installs it).

| exception                                              | status |
|--------------------------------------------------------|--------|
| request body/path/query fails validation (pydantic)    | 422    |
| ``RequestError``, ``RoutingError``, ``FormulationError`` | 422  |
| ``NotMakeableError`` (body carries ``closest``, ``distance``) | 422 |
| unknown device, node or job named in the path         | 404    |
| ``DeviceBusy``, ``EmergencyStopped``, ``OperationCancelled`` | 409 |
| ``DeviceError`` (the device refused in its current state) | 409 |
| ``DeviceFault``, ``TransportError``                    | 502    |
| ``TransportTimeout``                                   | 504    |
| missing or wrong bearer token                          | 401    |
| body sent as ``application/json`` but not valid JSON   | 400    |
| anything else (a bug; logged with traceback)           | 500    |

A body sent without a JSON content type is not parsed: it fails validation (422). ``POST
/estop`` is the exception to all of this: once authenticated it always stops the pumps and
answers 200, whatever its body (:mod:`asab.servers.common`).

Every error body is ``{"error": {"type", "message", ...}}`` (:class:`ErrorBody`), with the
attributes :func:`asab.errors.describe` adds (device, cause, closest, distance, ...).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from asab.actions.bench import EmergencyStopped, OperationCancelled
from asab.errors import (
    AsabError,
    Cause,
    ConfigError,
    DeviceBusy,
    DeviceError,
    DeviceFault,
    FormulationError,
    RequestError,
    RoutingError,
    TransportError,
    TransportTimeout,
    describe,
)

log = logging.getLogger(__name__)

STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (TransportTimeout, 504),
    (TransportError, 502),
    (DeviceFault, 502),
    (DeviceBusy, 409),
    (EmergencyStopped, 409),
    (OperationCancelled, 409),
    (DeviceError, 409),
    (FormulationError, 422),
    (RoutingError, 422),
    (RequestError, 422),
    (ConfigError, 503),
)
"""Exception class → HTTP status, most specific first (the first ``isinstance`` match wins)."""


class ErrorDetail(BaseModel):
    type: str = Field(description="exception class, e.g. 'NotMakeableError'")
    message: str
    device: str | None = None
    cause: Cause | None = Field(default=None, description="why the device refused or failed")
    detail: str | None = Field(
        default=None, description="the device's own code or text for the cause, e.g. 'ERR 101'")
    closest: dict[str, float] | None = Field(
        default=None, description="closest makeable composition, name → mole fraction")
    distance: float | None = Field(default=None, description="mole-fraction distance")
    errors: list[dict[str, Any]] | None = Field(default=None, description="validation errors")


class ErrorBody(BaseModel):
    """Body of every error response."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (400, "request body sent as JSON is not valid JSON"),
        (401, "missing or wrong bearer token"), (404, "no such device or job"),
        (409, "busy, emergency stop latched, or refused by the device in its current state"),
        (422, "invalid input, or composition not makeable"),
        (502, "device fault"),
        (503, "the bench's configuration or state (ledger) is unreadable; the message says "
              "which file and what to do"),
        (504, "device did not answer in time"))
}
"""OpenAPI ``responses`` shared by every route."""


def status_of(exc: BaseException) -> int:
    """HTTP status for ``exc`` per :data:`STATUS` (500 when nothing matches)."""
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def _body(exc: BaseException) -> dict[str, Any]:
    return {"error": jsonable_encoder(describe(exc))}


async def _asab_error(_: Request, exc: Exception) -> JSONResponse:
    code = status_of(exc)
    if code == 500:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse({"error": {"type": "InternalError", "message": "internal error"}},
                            status_code=500)
    return JSONResponse(_body(exc), status_code=code)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 for a request that fails validation; 400 (``MalformedBody``) when the body
    claimed to be JSON and is not (FastAPI reports that as a ``json_invalid`` error)."""
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        body = {"type": "MalformedBody", "message": "request body is not valid JSON",
                "errors": errors}
        return JSONResponse({"error": jsonable_encoder(body)}, status_code=400)
    body = {"type": "ValidationError", "message": "invalid request", "errors": errors}
    return JSONResponse({"error": jsonable_encoder(body)}, status_code=422)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    body = {"type": "HTTPError", "message": str(exc.detail)}
    return JSONResponse({"error": body}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception raised by a route of ``app`` per :data:`STATUS`."""
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(AsabError, _asab_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _asab_error)  # a bug: JSON 500 (logged)
