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
    request_id = str(info.get("uuid") or info.get("id") or "")
    if not isinstance(request, dict):
        raise RequestError(f"{request_id}: 'request' is not a JSON object")
    quantity, method = DENSITY
    if request.get("quantity") != quantity or method not in (request.get("methods") or []):
        raise RequestError(f"{request_id}: not a {quantity}/{method} request")
    params = (request.get("parameters") or {}).get(method)
    schema = capability_schema(quantity, method)["json_schema_specifications"]
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        found = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or 'parameters'}: {e.message}"
                          for e in errors)
        raise RequestError(f"{request_id}: invalid parameters ({len(errors)} problem(s)): {found}")
    formulation = _formulation(params["formulation"], config, request_id)
    temperature = params.get("temperature")
    if temperature is not None and (not math.isfinite(temperature) or temperature <= 0):
        raise RequestError(f"{request_id}: temperature {temperature!r} K is not a temperature")
    return DensityJob(request_id=request_id, formulation=formulation,
                      temperature=temperature, raw=info)


def _formulation(items: list[dict], config: BenchConfig, request_id: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        key = item["chemical"]["InChIKey"]
        if item["fraction_type"] != "molPerMol":
            raise RequestError(f"{request_id}: fraction_type {item['fraction_type']!r} "
                               "is not supported (only molPerMol)")
        if not math.isfinite(item["fraction"]):
            raise RequestError(f"{request_id}: fraction of {key} is not finite")
        try:
            config.chemical(key)
        except KeyError:
            raise RequestError(f"{request_id}: chemical {key} is not known to this bench") from None
        if key in out:
            raise RequestError(f"{request_id}: chemical {key} given twice")
        out[key] = float(item["fraction"])
    return out


def load_jobs(path: str | Path) -> list[Any]:
    """Read a jobs file: a JSON list of FINALES2 ``RequestInfo`` objects (items not parsed).

    Raises:
        RequestError: the file is not JSON or not a list.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"cannot read jobs file {path}: {exc}") from exc
    if not isinstance(data, list):
        raise RequestError(f"jobs file {path} must hold a JSON list of requests")
    return data
