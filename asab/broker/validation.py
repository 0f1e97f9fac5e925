"""Local checks before the broker sees a body (shared docs: finales2_api.md, quirks 1, 2, 8).

FINALES2 answers schema-invalid parameters with a bare 500, never validates result ``data``
and stores NaN as ``null``: so request parameters, result parameters and result data are
validated here with jsonschema (Draft 2020-12: the vendored schemas use ``prefixItems``)
against the vendored capability schemas, and non-finite numbers are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jsonschema

from asab.broker.models import Request, RequestInfo, Result
from asab.errors import BrokerError, RequestError
from asab.requests import capability_schema

SchemaSource = Callable[[str, str], dict[str, Any]]
"""``(quantity, method) → capability document``; raises ``KeyError`` for an unknown one."""


class LocalValidationError(BrokerError):
    """A body was refused *before* sending: schema violation or a non-finite number.

    Always ``permanent`` with ``status=None`` (nothing reached the broker).
    """

    def __init__(self, message: str):
        super().__init__(message, status=None, permanent=True)


def non_finite_path(value: Any, path: str = "") -> str | None:
    """The JSON path (``a/b/0``) of the first NaN or ±Infinity inside ``value``, or ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "/"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = non_finite_path(item, f"{path}/{key}" if path else str(key))
        if found is not None:
            return found
    return None


def ensure_finite(body: Any, what: str = "body") -> None:
    """Raise :class:`LocalValidationError` if ``body`` holds NaN or Infinity anywhere (quirk 8)."""
    where = non_finite_path(body)
    if where is not None:
        raise LocalValidationError(
            f"{what}: non-finite number at {where} (FINALES2 would store null)")


@lru_cache(maxsize=64)
def _validator(quantity: str, method: str, part: str,
               source: SchemaSource) -> jsonschema.protocols.Validator:
    try:
        schema = source(quantity, method)[part]
    except KeyError:
        raise RequestError(f"capability {quantity}/{method} is not known here") from None
    return jsonschema.Draft202012Validator(schema)


def schema_problems(instance: Any, quantity: str, method: str, part: str,
                    source: SchemaSource = capability_schema) -> list[str]:
    """Every violation of ``part`` (``json_schema_specifications`` or
    ``json_schema_result_output``) of the capability, as ``"path: message"`` strings.

    Raises:
        RequestError: the capability is not known to ``source``.
    """
    validator = _validator(quantity, method, part, source)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


def check_request(info: RequestInfo | Request, method: str,
                  source: SchemaSource = capability_schema) -> dict[str, Any]:
    """Check a request before accepting it for ``method``; return its parameters for ``method``.

    Raises:
        RequestError: the request does not offer ``method``, lacks its parameters, holds a
            non-finite number, or violates the capability's specification schema.
    """
    request = info.request if isinstance(info, RequestInfo) else info
    uuid = info.uuid if isinstance(info, RequestInfo) else "request"
    if method not in request.methods:
        raise RequestError(f"{uuid}: {request.quantity} request does not offer method {method}")
    params = request.parameters.get(method)
    if params is None:
        raise RequestError(f"{uuid}: no parameters for method {method}")
    where = non_finite_path(params)
    if where is not None:
        raise RequestError(f"{uuid}: non-finite number in parameters at {where}")
    problems = schema_problems(params, request.quantity, method,
                               "json_schema_specifications", source)
    if problems:
        raise RequestError(f"{uuid}: invalid parameters ({len(problems)} problem(s)): "
                           + "; ".join(problems))
    return params


def check_result(result: Result, source: SchemaSource = capability_schema) -> None:
    """Check a result before posting: finite, parameters and data valid for its capability.

    Raises:
        LocalValidationError: non-finite number, unknown capability, parameters not keyed by
            the result's method, or a schema violation (each problem listed).
    """
    body = result.model_dump()  # python mode: json mode turns NaN into None
    ensure_finite(body, "result")
    method = result.method[0]
    if set(result.parameters) != {method}:
        raise LocalValidationError(f"result parameters must be keyed by {method!r}, "
                                   f"got {sorted(result.parameters)}")
    try:
        problems = [f"parameters/{p}" for p in schema_problems(
            result.parameters[method], result.quantity, method, "json_schema_specifications",
            source)]
        problems += [f"data/{p}" for p in schema_problems(
            result.data, result.quantity, method, "json_schema_result_output", source)]
    except RequestError as exc:
        raise LocalValidationError(str(exc)) from None
    if problems:
        raise LocalValidationError(f"result invalid ({len(problems)} problem(s)): "
                                   + "; ".join(problems))


def check_new_request(request: Request, source: SchemaSource = capability_schema) -> None:
    """Check a request before posting it (requester side): finite and valid for every method.

    Raises:
        LocalValidationError: as :func:`check_result`.
    """
    ensure_finite(request.model_dump(), "request")
    for method in request.methods:
        try:
            check_request(request, method, source)
        except RequestError as exc:
            raise LocalValidationError(str(exc)) from None
