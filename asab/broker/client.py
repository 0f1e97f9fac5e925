"""FINALES2 client for a tenant (shared docs: finales2_api.md, broker version 1.1.0).

:class:`FinalesClient` wraps a synchronous ``httpx.Client`` and copes with the documented
quirks:

- exact paths (a 307 "wrong trailing slash" redirect is never followed: it is a permanent
  :class:`~asab.errors.BrokerError` with ``status=307``);
- form login, the token cached and renewed ``token_margin`` s before the JWT's ``exp``
  (payload decoded without checking the signature); on a 401 it logs in once more and
  retries the call once (quirk: an expired token gives the same 401 as a bad password);
- a timeout on every call; bounded exponential backoff with jitter on transient failures
  (connection errors, timeouts, 5xx other than the schema 500, 408/429), through
  :func:`asab.retry.retrying` (tenacity) with the injected ``sleep``;
- local validation before sending (jsonschema against the vendored capability schemas,
  NaN/Infinity refused: quirks 1, 2, 8), see :mod:`asab.broker.validation`.

Retries. GETs and status updates (setting the same status twice is harmless) are retried
up to ``max_attempts``. ``POST /results/`` (and ``/requests/``) is **not idempotent**
(quirk 3: duplicates are stored): it is retried only when the connection was never
established; any other failure after sending raises :class:`PostOutcomeUnknown`. The CALLER
must then look the request's results up (:meth:`FinalesClient.result_for_request` /
:meth:`FinalesClient.results_requested`, matching ``run_info.internal_reference``) before
posting again.

Errors: every failure is a ``BrokerError(message, status, permanent)``: ``permanent`` for
4xx, redirects, the schema 500 (500 text/plain on ``POST /requests/`` or ``POST /results/``,
quirk 1) and local validation (:class:`~asab.broker.validation.LocalValidationError`,
``status=None``); transient (``permanent=False``) for everything retrying may cure.

Not thread-safe: use one client per thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from asab.broker.models import (
    Capability,
    Limitation,
    NewRequestStatus,
    NewResultStatus,
    Request,
    RequestInfo,
    Result,
    ResultInfo,
    Tenant,
)
from asab.broker.settings import BrokerSettings
from asab.broker.validation import (
    LocalValidationError,
    SchemaSource,
    check_new_request,
    check_request,
    check_result,
)
from asab.errors import BrokerError
from asab.requests import capability_schema
from asab.retry import retrying

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
LOGIN_PATH = "/user_management/authenticate"
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class PostOutcomeUnknown(BrokerError):
    """A non-idempotent POST failed after it may have reached the broker (transient).

    The broker may or may not have stored it: look it up before posting again (quirk 3).
    """


class _Transient(BrokerError):
    def __init__(self, message: str, status: int | None, sent: bool):
        super().__init__(message, status=status, permanent=False)
        self.sent = sent


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch s) of a JWT, decoded without checking the signature, or None."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError, binascii.Error):
        return None


def _uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        raise BrokerError(f"not a uuid: {value!r:.60}", permanent=True) from None


class FinalesClient:
    """A FINALES2 tenant's client. Use as a context manager or call :meth:`close`.

    Args:
        settings: URL, credentials, timeouts and retry bounds.
        transport: an httpx transport (tests pass the fake broker's); default: network.
        clock: epoch seconds, for token expiry (injectable for tests).
        sleep: how to wait between retries, in s: pass the bench clock's ``sleep`` to retry
            on its time (tests pass a recorder or a virtual clock's). Default: real time.
        rng: uniform [0, 1) source for the backoff jitter.
        schemas: capability documents for local validation (default: the vendored ones).
    """

    def __init__(self, settings: BrokerSettings, *, transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random,
                 schemas: SchemaSource = capability_schema):
        self.settings = settings
        self._clock, self._sleep, self._rng, self._schemas = clock, sleep, rng, schemas
        self._transport = transport
        self._http = self._new_http()
        self._token: str | None = None
        self._renew_at = 0.0
        self.logins = 0
        """Number of successful logins (for monitoring and tests)."""

    def __enter__(self) -> FinalesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def _new_http(self) -> httpx.Client:
        return httpx.Client(base_url=self.settings.url, transport=self._transport,
                            timeout=httpx.Timeout(self.settings.timeout), follow_redirects=False)

    def _fresh_connections(self) -> None:
        """Drop every kept-alive connection. FINALES2 closes a connection after an unhandled
        500 without saying ``Connection: close``: a request sent on it next would fail."""
        self._http.close()
        self._http = self._new_http()

    # -- authentication ---------------------------------------------------------------------
    def login(self) -> str:
        """Log in with a form body and cache the token; return it.

        Raises:
            BrokerError: 401 wrong password / 404 unknown user (permanent), or transient.
        """
        form = {"username": self.settings.username, "grant_type": "password",
                "password": self.settings.password.get_secret_value()}
        issued = self._clock()
        answer = self._decode(self._send("POST", LOGIN_PATH, data=form), "POST", LOGIN_PATH)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise BrokerError("login answer holds no access_token", status=200, permanent=True)
        exp = token_expiry(token)
        margin = self.settings.token_margin
        if exp is not None:  # never renew before half the lifetime is gone
            margin = min(margin, max(exp - issued, 0.0) / 2)
        self._token, self._renew_at = token, (exp - margin if exp is not None else float("inf"))
        self.logins += 1
        logger.info("logged in to FINALES2 at %s as %s", self.settings.url, self.settings.username)
        return token

    def _bearer(self) -> dict[str, str]:
        if self._token is None or self._clock() >= self._renew_at:
            self.login()
        return {"Authorization": f"Bearer {self._token}"}

    # -- transport ----------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except _NOT_SENT as exc:
            raise _Transient(f"{method} {path}: cannot connect: {exc!r}", None, sent=False) from exc
        except httpx.TransportError as exc:
            self._fresh_connections()  # the next try must not reuse a broken connection
            raise _Transient(f"{method} {path}: {exc!r}", None, sent=True) from exc
        if response.status_code >= 500:
            self._fresh_connections()
        return response

    def _decode(self, resp: httpx.Response, method: str, path: str,
                schema_500: bool = False) -> Any:
        code, where = resp.status_code, f"{method} {path}"
        if 200 <= code < 300:
            try:
                return resp.json()
            except ValueError:
                raise BrokerError(f"{where}: answer is not JSON: {resp.text!r:.80}",
                                  status=code, permanent=True) from None
        if 300 <= code < 400:
            raise BrokerError(f"{where}: redirected ({code}) to {resp.headers.get('location')}"
                              " - wrong path (trailing slash?)", status=code, permanent=True)
        plain = resp.headers.get("content-type", "").startswith("text/plain")
        if code == 500 and plain and schema_500:
            raise BrokerError(f"{where}: broker refused the parameters (500 text/plain: schema "
                              "violation, quirk 1)", status=code, permanent=True)
        detail = _detail(resp)
        if code in (408, 429):
            raise _Transient(f"{where}: {code} {detail}", code, sent=False)
        if code >= 500:
            raise _Transient(f"{where}: {code} {detail}", code, sent=True)
        raise BrokerError(f"{where}: {code} {detail}", status=code, permanent=True)

    def _authorized(self, method: str, path: str, schema_500: bool,
                    headers: dict[str, str], **kwargs: Any) -> Any:
        resp = self._send(method, path, headers=headers | self._bearer(), **kwargs)
        if resp.status_code == 401:  # expired or invalidated token: log in once more, retry once
            logger.info("%s %s: 401, logging in again", method, path)
            self._token = None
            resp = self._send(method, path, headers=headers | self._bearer(), **kwargs)
        return self._decode(resp, method, path, schema_500)

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: Any = None, idempotent: bool = True, schema_500: bool = False) -> Any:
        kwargs: dict[str, Any] = {"headers": {}}
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v is not None}
        if body is not None:
            try:
                kwargs["content"] = json.dumps(body, allow_nan=False).encode()
            except ValueError as exc:
                raise LocalValidationError(f"{method} {path}: {exc}") from None
            kwargs["headers"] = {"Content-Type": "application/json"}
        attempts = self.settings.max_attempts

        def retriable(exc: BaseException) -> bool:
            return isinstance(exc, _Transient) and (idempotent or not exc.sent)

        def log_retry(attempt: int, exc: BaseException, delay: float) -> None:
            logger.warning("%s; retry %d/%d in %.2f s", exc, attempt, attempts - 1, delay)

        policy = retrying(attempts, retriable, sleep=lambda s: self._sleep(s),
                          backoff=lambda failed: self._backoff(failed - 1), on_retry=log_retry)
        try:
            return policy(self._authorized, method, path, schema_500, **kwargs)
        except _Transient as exc:
            if not idempotent and exc.sent:
                raise PostOutcomeUnknown(f"{exc} (may have been stored: look it up before "
                                         "posting again)", status=exc.status) from exc
            raise BrokerError(f"{exc} (gave up after {attempts} attempts)",
                              status=exc.status, permanent=False) from exc

    def _backoff(self, attempt: int) -> float:
        """s to wait after try ``attempt`` (0-based) failed: ``min(backoff_max,
        backoff_base·2^attempt)``, half of it jittered (equal jitter)."""
        cap = min(self.settings.backoff_max, self.settings.backoff_base * 2 ** attempt)
        return cap / 2 + self._rng() * cap / 2

    # -- parsing ------------------------------------------------------------------------------
    @staticmethod
    def _one(model: type[M], data: Any, where: str) -> M | None:
        if data is None:
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise BrokerError(f"{where}: malformed {model.__name__}: {exc}", status=200,
                              permanent=True) from None

    @staticmethod
    def _many(model: type[M], data: Any, where: str) -> list[M]:
        if not isinstance(data, list):
            raise BrokerError(f"{where}: expected a list", status=200, permanent=True)
        out = []
        for item in data:
            try:
                out.append(model.model_validate(item))
            except ValidationError as exc:  # one malformed item must not hide the others
                logger.warning("%s: skipping malformed %s: %s", where, model.__name__, exc)
        return out

    # -- endpoints ----------------------------------------------------------------------------
    def hello(self) -> str:
        """``GET /``: a cheap token check; returns the greeting."""
        return self._call("GET", "/")

    def pending_requests(self, quantity: str | None = None,
                         method: str | None = None) -> list[RequestInfo]:
        """``GET /pending_requests/``: pending requests (unordered; malformed ones skipped)."""
        data = self._call("GET", "/pending_requests/", params={"quantity": quantity,
                                                                "method": method})
        return self._many(RequestInfo, data, "pending_requests")

    def get_request(self, request_id: str) -> RequestInfo | None:
        """``GET /requests/{id}``: the request, or None for an unknown id (quirk: not 404)."""
        rid = _uuid(request_id)
        return self._one(RequestInfo, self._call("GET", f"/requests/{rid}"), f"request {rid}")

    def post_request(self, request: Request | dict[str, Any]) -> str:
        """``POST /requests/`` (requester side), validated locally first; returns the uuid.

        Not retried once sent: see :class:`PostOutcomeUnknown`.
        """
        request = Request.model_validate(request)
        check_new_request(request, self._schemas)
        return str(self._call("POST", "/requests/", body=request.model_dump(),
                              idempotent=False, schema_500=True))

    def update_request_status(self, request_id: str, new_status: NewRequestStatus,
                              message: str = "") -> str:
        """Set a request's status; returns the broker's confirmation text.

        The ``request_id`` query parameter is the one the broker uses (the path id is
        ignored); both are sent. Retried like a GET: setting a status again is harmless.
        """
        if new_status not in ("pending", "reserved", "retracted"):
            raise LocalValidationError(f"cannot set a request to {new_status!r}")
        rid = _uuid(request_id)
        return self._call("POST", f"/requests/{rid}/update_status/", params={
            "request_id": rid, "new_status": new_status, "status_change_message": message})

    def post_result(self, result: Result | dict[str, Any]) -> str:
        """``POST /results/`` after local validation; returns the new result's uuid.

        The CALLER must, before calling this again for the same request after any error,
        check :meth:`result_for_request`/:meth:`results_requested` (quirk 3).

        Raises:
            LocalValidationError: invalid or non-finite result, or no ``request_uuid``.
            PostOutcomeUnknown: failed after sending; it may be stored.
            BrokerError: refused (permanent) or unreachable (transient, never sent).
        """
        result = Result.model_validate(result)
        if not result.request_uuid:
            raise LocalValidationError("result has no request_uuid: use post_unsolicited_result")
        _uuid(result.request_uuid)
        check_result(result, self._schemas)
        return str(self._call("POST", "/results/", body=result.model_dump(),
                              idempotent=False, schema_500=True))

    def post_unsolicited_result(self, result: Result | dict[str, Any]) -> str:
        """``POST /results/post_unsolicited_result`` (``request_uuid`` may be "").

        Validated and retried exactly as :meth:`post_result`.
        """
        result = Result.model_validate(result)
        check_result(result, self._schemas)
        return str(self._call("POST", "/results/post_unsolicited_result",
                              body=result.model_dump(), idempotent=False, schema_500=True))

    def get_result(self, result_id: str) -> ResultInfo | None:
        """``GET /results/{id}``: the result, or None for an unknown id."""
        rid = _uuid(result_id)
        return self._one(ResultInfo, self._call("GET", f"/results/{rid}"), f"result {rid}")

    def update_result_status(self, result_id: str, new_status: NewResultStatus) -> str:
        """Mark a result ``deleted`` or ``amended`` (query ``result_id`` counts). FINALES2
        1.1.0 refuses ``original`` (400): a result cannot be set back."""
        if new_status not in ("deleted", "amended"):
            raise LocalValidationError(f"cannot set a result to {new_status!r} (the broker "
                                       "takes 'deleted' or 'amended')")
        rid = _uuid(result_id)
        return self._call("POST", f"/results/{rid}/update_status/",
                          params={"result_id": rid, "new_status": new_status})

    def result_for_request(self, request_id: str) -> ResultInfo | None:
        """``GET /results_requested/{id}``: the FIRST result stored for it (any status), or None."""
        rid = _uuid(request_id)
        return self._one(ResultInfo, self._call("GET", f"/results_requested/{rid}"),
                         f"results_requested {rid}")

    def results_requested(self, quantity: str | None = None,
                          method: str | None = None) -> list[ResultInfo]:
        """``GET /results_requested/``: every stored result (all statuses) for quantity/method."""
        data = self._call("GET", "/results_requested/", params={"quantity": quantity,
                                                                 "method": method})
        return self._many(ResultInfo, data, "results_requested")

    def capabilities(self, currently_available: bool = True) -> list[Capability]:
        """``GET /capabilities/``: quantity, method and the two JSON Schemas of each."""
        data = self._call("GET", "/capabilities/",
                          params={"currently_available": str(currently_available).lower()})
        return self._many(Capability, data, "capabilities")

    def limitations(self, currently_available: bool = True) -> list[Limitation]:
        """``GET /limitations/``: the registered limitations per capability."""
        data = self._call("GET", "/limitations/",
                          params={"currently_available": str(currently_available).lower()})
        return self._many(Limitation, data, "limitations")

    def tenants(self) -> list[Tenant]:
        """``GET /tenants/``: every registered tenant."""
        return self._many(Tenant, self._call("GET", "/tenants/"), "tenants")

    def check_tenant(self) -> Tenant:
        """Check ``settings.tenant_uuid`` against ``GET /tenants/`` (call at start-up).

        Raises:
            BrokerError: (permanent) the uuid is not registered - it changes whenever the
                tenant's limitations are re-registered - or the tenant is inactive.
        """
        for tenant in self.tenants():
            if tenant.tenant_uuid == self.settings.tenant_uuid:
                if not tenant.is_active:
                    raise BrokerError(f"tenant {tenant.name} ({tenant.tenant_uuid}) is inactive",
                                      permanent=True)
                return tenant
        raise BrokerError(f"tenant uuid {self.settings.tenant_uuid} is not registered with the "
                          "broker (it changes when limitations are re-registered: ask the "
                          "broker's administrator)", permanent=True)

    def check_request(self, info: RequestInfo | Request, method: str) -> dict[str, Any]:
        """Validate a request's parameters for ``method`` before accepting it; return them.

        Raises:
            RequestError: see :func:`asab.broker.validation.check_request`.
        """
        return check_request(info, method, self._schemas)


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    return str(body.get("detail", body) if isinstance(body, dict) else body)[:300]
