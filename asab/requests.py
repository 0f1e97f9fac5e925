"""FINALES2 requests as asab jobs: parse and validate a request into a :class:`DensityJob`.

The wire format is the broker's ``RequestInfo`` (shared docs: finales2_api.md); request
parameters are validated against the vendored capability schema
(``asab/schemas/finales2/capabilities``) with jsonschema before anything else.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from asab.config import BenchConfig
from asab.errors import RequestError

DENSITY = ("density", "vibrating_tube_densimetry")


@lru_cache(maxsize=None)
def capability_schema(quantity: str, method: str) -> dict[str, Any]:
    """The vendored FINALES2 capability document for ``quantity``/``method``.

    Raises:
        KeyError: no such capability is vendored.
    """
    name = f"{quantity}_{method}.json"
    ref = resources.files("asab.schemas") / "finales2" / "capabilities" / name
    if not ref.is_file():
        raise KeyError(f"no vendored capability schema {name}")
    return json.loads(ref.read_text(encoding="utf-8"))


class DensityJob(BaseModel):
    """A density (+ viscosity) measurement request, validated.

    Attributes:
        request_id: the broker's request uuid (or the jobs file's id).
        formulation: InChIKey → requested mole fraction.
        temperature: requested cell temperature in K, or ``None`` for the bench's own.
        raw: the request as received.
    """

    model_config = ConfigDict(extra="forbid")
    request_id: str
    formulation: dict[str, float]
    temperature: float | None = Field(default=None, description="K")
    raw: dict[str, Any]


def parse_density_request(info: Any, config: BenchConfig) -> DensityJob:
    """Turn one FINALES2 ``RequestInfo`` (or bare ``Request``) into a :class:`DensityJob`.

    Raises:
        RequestError: not a JSON object, wrong capability, schema violation, a fraction type
            other than ``molPerMol``, a non-finite number, a chemical given twice, or a
            chemical this bench does not know (by InChIKey).
    """
    if not isinstance(info, dict):
        raise RequestError(f"request is not a JSON object: {info!r:.80}")
    request = info.get("request", info)
    request_id = str(info.get("uuid") or info.get("id") or "")[:64]
    if not isinstance(request, dict):
        raise RequestError(f"{request_id}: 'request' is not a JSON object")
    quantity, method = DENSITY
    methods, parameters = request.get("methods") or [], request.get("parameters") or {}
    if not isinstance(methods, list) or not isinstance(parameters, dict):
        raise RequestError(f"{request_id}: 'methods' must be a list and 'parameters' an object")
    if request.get("quantity") != quantity or method not in methods:
        raise RequestError(f"{request_id}: not a {quantity}/{method} request")
    params = parameters.get(method)
    schema = capability_schema(quantity, method)["json_schema_specifications"]
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        found = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or 'parameters'}: {e.message}"
                          for e in errors)
        raise RequestError(f"{request_id}: invalid parameters ({len(errors)} problem(s)): {found}")
    formulation = _formulation(params["formulation"], config, request_id)
    temperature = params.get("temperature")
    if temperature is not None and (not _finite(temperature) or temperature <= 0):
        raise RequestError(f"{request_id}: temperature {temperature!r} K is not a temperature")
    return DensityJob(request_id=request_id, formulation=formulation,
                      temperature=temperature, raw=info)


def _finite(value: float | int) -> bool:
    """Finite, and within float range (a JSON integer can be larger than any float)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _formulation(items: list[dict], config: BenchConfig, request_id: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        key = item["chemical"]["InChIKey"]
        if item["fraction_type"] != "molPerMol":
            raise RequestError(f"{request_id}: fraction_type {item['fraction_type']!r} "
                               "is not supported (only molPerMol)")
        if not _finite(item["fraction"]):
            raise RequestError(f"{request_id}: fraction of {key} is not finite")
        try:
            config.chemical(key)
        except KeyError:
            raise RequestError(f"{request_id}: chemical {key} is not known to this bench") from None
        if key in out:
            raise RequestError(f"{request_id}: chemical {key} given twice")
        out[key] = float(item["fraction"])
    return out


MAX_JOBS_FILE = 20_000_000
"""Bytes a jobs file may have (the demo's nine requests are 6 kB)."""
MAX_DEPTH = 32
"""Nesting depth a request may have (a FINALES2 request is about 6 levels deep)."""
MAX_DIGITS = 300
"""Digits an integer in a jobs file may have; longer ones read as out of range."""


def _int(text: str) -> int | float:
    """JSON integers: exact, or +/-inf beyond :data:`MAX_DIGITS` (flagged by
    :func:`item_problem`; Python refuses to read more than 4300 digits at all)."""
    digits = text.lstrip("-")
    if len(digits) > MAX_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def load_jobs(path: str | Path) -> list[Any]:
    """Read a jobs file: a JSON list of FINALES2 ``RequestInfo`` objects (items not parsed).

    Numbers that do not fit a float read as ±inf and ``NaN``/``Infinity`` literals as floats:
    :func:`item_problem` then rejects that one item, not the file.

    Raises:
        RequestError: the file is unreadable, over :data:`MAX_JOBS_FILE` bytes, not JSON,
            nested too deeply to read, or not a list.
    """
    try:
        if Path(path).stat().st_size > MAX_JOBS_FILE:
            raise RequestError(f"jobs file {path} is larger than {MAX_JOBS_FILE:,} bytes")
        data = json.loads(Path(path).read_text(encoding="utf-8"), parse_int=_int)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise RequestError(f"cannot read jobs file {path}: {exc}") from exc
    except RecursionError:
        raise RequestError(f"cannot read jobs file {path}: nested too deeply (a request is "
                           f"at most {MAX_DEPTH} levels deep)") from None
    if not isinstance(data, list):
        raise RequestError(f"jobs file {path} must hold a JSON list of requests")
    return data


def item_problem(item: Any) -> str | None:
    """Why one request of a jobs file cannot be used, or ``None``: nested deeper than
    :data:`MAX_DEPTH`, a number that is not finite (or beyond float range), or text that is
    not valid Unicode (a lone surrogate escape). Walks iteratively (no recursion limit)."""
    stack: list[tuple[Any, str, int]] = [(item, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        where = path or "the request"
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels at {where}"
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _finite(value):
            return f"number out of range at {where}"
        if isinstance(value, str) and not _valid_text(value):
            return f"text that is not valid Unicode (a lone surrogate) at {where}"
        if isinstance(value, dict):
            for key, sub in value.items():
                if not _valid_text(str(key)):
                    return f"a key that is not valid Unicode at {where}"
                stack.append((sub, f"{path}/{key}" if path else str(key), depth + 1))
        elif isinstance(value, list):
            stack.extend((sub, f"{path}/{i}" if path else str(i), depth + 1)
                         for i, sub in enumerate(value))
    return None


def safe_copy(item: Any) -> Any:
    """``item`` as it can be stored in a record: lone surrogates escaped, non-finite numbers
    as text, nesting past :data:`MAX_DEPTH` cut (``"…"``). Iterative."""
    def leaf(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        if isinstance(value, str) and not _valid_text(value):
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value

    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(item, root, 0, 0)]
    while stack:
        value, parent, slot, depth = stack.pop()
        if depth >= MAX_DEPTH and isinstance(value, (dict, list)):
            parent[slot] = "…"
        elif isinstance(value, dict):
            parent[slot] = {}
            for key, sub in value.items():
                stack.append((sub, parent[slot], leaf(str(key)), depth + 1))
        elif isinstance(value, list):
            parent[slot] = [None] * len(value)
            stack.extend((sub, parent[slot], i, depth + 1) for i, sub in enumerate(value))
        else:
            parent[slot] = leaf(value)
    return root[0]


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
