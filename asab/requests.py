"""FINALES2 requests as asab jobs: the one request validator, and reading jobs files.

:func:`validate_request` is the only place a FINALES2 request is judged: ``asab run``
(:mod:`asab.runner`), the tenant (:func:`asab.broker.capabilities.check_request`, which adds
what the bench's state decides: the formulation plan, stock and vials) and
:func:`parse_density_request` all call it. It never raises for a bad request: it returns
*every* reason against it, each clipped to :data:`MAX_REASON` characters, and the validated job
(:class:`DensityJob` or :class:`FlowJob`) when there is none.

The wire format is the broker's ``RequestInfo`` or a bare ``Request`` (shared docs:
finales2_api.md); request parameters are validated against the vendored capability schema
(``asab/schemas/finales2/capabilities``) with jsonschema (Draft 2020-12). The limits the
validator applies are the named constants below (:data:`TEMPERATURE_TOLERANCE`,
:data:`MOLE_FRACTION_RANGE`, :data:`FRACTION_TYPE`, :data:`MAX_REQUEST_ID`, :data:`MAX_DEPTH`,
:data:`MAX_INT_DIGITS`, :data:`MAX_REASON`); other modules import them from here.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Iterator, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from asab.config import BenchConfig
from asab.errors import RequestError

Capability = tuple[str, str]
"""``(quantity, method)`` of a FINALES2 capability."""

DENSITY: Capability = ("density", "vibrating_tube_densimetry")
FLOW: Capability = ("electrolyte", "flow")
CAPABILITIES: tuple[Capability, ...] = (DENSITY, FLOW)
"""(quantity, method) pairs this bench serves: a density (+ viscosity) measurement, and an
electrolyte formulated and delivered into a vial."""

# ---------------------------------------------------------------------- limits
TEMPERATURE_TOLERANCE = 0.05
"""K: a requested temperature within this of the densimeter method's temperature is served
(at the method's temperature); one further away is refused. A design choice, not a device
figure: the device notes (shared docs: device_protocols.md) give no temperature stability for
the DMA 4100 M. The instrument reports cell temperatures to 0.001 °C (``25.001``); 0.05 K
takes a request written to two decimals (``298.15`` for 25.00 °C, ``298.2``) as the method's
temperature and refuses any other set point. The density job's own check
(:mod:`asab.actions.job`) uses this constant too."""

FRACTION_TYPE = "molPerMol"
"""The only ``fraction_type`` served (the only one in use on FINALES2)."""

MOLE_FRACTION_RANGE = (0.0, 1.0)
"""mol/mol: the closed range a requested mole fraction must lie in."""

MAX_REQUEST_ID = 64
"""Characters a request id may have (a FINALES2 id is a 36-character UUID4)."""

MAX_DEPTH = 32
"""Nesting depth a request may have (a FINALES2 request is about 6 levels deep)."""

MAX_DIGITS = 300
"""Digits an integer in a jobs file may have; longer ones read as out of range."""

MAX_INT_DIGITS = 4000
"""Digits an integer anywhere in a request may have before the request is unreadable: Python
refuses to turn an integer of more than 4300 digits into text, so one that long is refused
before any message tries to show it (shorter ones beyond float range are refused where they
stand, e.g. "not a temperature")."""

MAX_REASON = 300
"""Characters one refusal reason keeps (journal, logs, the message given to the broker)."""

MAX_JOBS_FILE = 20_000_000
"""Bytes a jobs file may have (the demo's nine requests are 6 kB)."""

_MAX_INT_BITS = int(MAX_INT_DIGITS / math.log10(2))


def clip(text: str, limit: int = MAX_REASON) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit - 30]}… ({len(text) - limit + 30} more characters)"


class _Short(reprlib.Repr):
    """A bounded ``repr`` for messages: long containers and strings cut, integers beyond 40
    digits as ``~1eN`` (never converted to text whole)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"{'-' if x < 0 else ''}~1e{math.floor(math.log10(abs(x)))}"
        return super().repr_int(x, level)


_short = _Short()


def shown(value: Any) -> str:
    """``value`` as a message shows it: a bounded ``repr`` (about 40 characters a part)."""
    return _short.repr(value)


# ---------------------------------------------------------------------- schemas
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


@lru_cache(maxsize=None)
def _parameters_validator(quantity: str, method: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(
        capability_schema(quantity, method)["json_schema_specifications"])


def schema_errors(quantity: str, method: str, params: Any) -> list[str]:
    """Every violation of the capability's ``json_schema_specifications`` by ``params``.

    Returns:
        ``"path: message"`` strings (Draft 2020-12), sorted by path (``parameters`` for the
        whole object).

    Raises:
        KeyError: no such capability is vendored.
    """
    errors = sorted(_parameters_validator(quantity, method).iter_errors(params),
                    key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or 'parameters'}: {e.message}" for e in errors]


# ---------------------------------------------------------------------- validated jobs
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


class FlowJob(BaseModel):
    """An ``electrolyte``/``flow`` request, validated.

    Attributes:
        request_id: the broker's request uuid.
        formulation: InChIKey → requested mole fraction.
        volume: mL to deliver into the vial.
        raw: the request as received.
    """

    model_config = ConfigDict(extra="forbid")
    request_id: str
    formulation: dict[str, float]
    volume: float = Field(gt=0, description="mL")
    raw: Any = None


class ValidatedRequest(BaseModel):
    """The verdict of :func:`validate_request` on one request.

    Attributes:
        request_id: the request's ``uuid`` (else its ``id``; ``""`` when neither is given).
        quantity, method: the capability asked for (``None`` when not recognisable).
        reasons: every reason against the request, each at most :data:`MAX_REASON`
            characters; empty when it is valid.
        formulation: InChIKey → mole fraction of every formulation item that was read
            correctly (also when the request is refused, e.g. for its temperature).
        temperature: K the density would be measured at (density requests whose temperature
            is servable; ``None`` otherwise).
        job: the validated job when there is no reason against the request, else ``None``.
    """

    model_config = ConfigDict(extra="forbid")
    request_id: str = ""
    quantity: str | None = None
    method: str | None = None
    reasons: list[str] = Field(default_factory=list)
    formulation: dict[str, float] = Field(default_factory=dict)
    temperature: float | None = Field(default=None, description="K")
    job: DensityJob | FlowJob | None = None

    def error(self) -> RequestError:
        """The reasons as one :class:`RequestError`: ``"<request id>: reason; reason"``."""
        text = "; ".join(self.reasons) or "request not validated"
        return RequestError(f"{self.request_id}: {text}" if self.request_id else text)


def validate_request(info: Any, config: BenchConfig, *,
                     capabilities: Sequence[Capability] = CAPABILITIES) -> ValidatedRequest:
    """Judge one FINALES2 request against what the bench's configuration can serve.

    Checks, every reason listed (within a stage; a stage that fails stops the later ones):
    the request is readable (nested at most :data:`MAX_DEPTH` levels, valid Unicode, integers
    of at most :data:`MAX_INT_DIGITS` digits: else the first such problem only); a JSON
    object whose ``methods`` is a list and ``parameters`` an object; a capability in
    ``capabilities``; request id at most :data:`MAX_REQUEST_ID` characters; every schema error
    of the parameters; per formulation item: ``fraction_type`` is :data:`FRACTION_TYPE`, the
    fraction a finite number within :data:`MOLE_FRACTION_RANGE`, the chemical known to the
    bench by InChIKey and not given twice; the formulation not empty; density: a densimeter
    configured, the temperature a finite number > 0 K within :data:`TEMPERATURE_TOLERANCE` of
    the densimeter's (``null``: the densimeter's); flow: the volume a finite number > 0 mL
    and at most ``settings.vial_capacity``, vials configured; no number anywhere else that is
    not finite (NaN, ±Infinity, an integer beyond float range).

    Args:
        info: the request as received (``RequestInfo`` or bare ``Request``; any JSON value).
        config: the bench configuration (chemicals, densimeter, vials).
        capabilities: the capabilities served by the caller (``asab run``: density only).

    Returns:
        :class:`ValidatedRequest`; never raises for a bad request. The job's ``raw`` is
        ``info`` itself.
    """
    out = ValidatedRequest()
    problems = list(_walk(info))
    unreadable = [(kind, path) for kind, path in problems if kind != "number"]
    if unreadable:
        out.reasons = [clip(_problem_text(*unreadable[0]))]
        return out
    if not isinstance(info, dict):
        out.reasons = [clip(f"request is not a JSON object: {shown(info)}")]
        return out
    judged: set[str] = set()  # paths whose non-finite numbers a check below reported
    _check(info, config, capabilities, out, judged)
    loose = [path for kind, path in problems if kind == "number" and path not in judged]
    if loose:
        where = ", ".join(loose[:5]) + (f" ({len(loose)} in all)" if len(loose) > 5 else "")
        out.reasons.append(f"number out of range at {where}")
    out.reasons = [clip(r) for r in out.reasons]
    if out.reasons:
        out.job = None
    return out


def parse_density_request(info: Any, config: BenchConfig) -> DensityJob:
    """Turn one FINALES2 ``RequestInfo`` (or bare ``Request``) into a :class:`DensityJob`:
    :func:`validate_request` for density only.

    Raises:
        RequestError: any reason :func:`validate_request` finds, all of them in the message.
    """
    checked = validate_request(info, config, capabilities=(DENSITY,))
    if not isinstance(checked.job, DensityJob):
        raise checked.error()
    return checked.job


def _check(info: dict, config: BenchConfig, capabilities: Sequence[Capability],
           out: ValidatedRequest, judged: set[str]) -> None:
    """The checks of :func:`validate_request` after the request is known to be readable."""
    raw_id = info.get("uuid") or info.get("id") or ""
    out.request_id = raw_id if isinstance(raw_id, str) else shown(raw_id)
    if len(out.request_id) > MAX_REQUEST_ID:
        out.reasons.append(f"request id {shown(out.request_id)} is longer than "
                           f"{MAX_REQUEST_ID} characters")
    request = info.get("request", info)
    if not isinstance(request, dict):
        out.reasons.append("'request' is not a JSON object")
        return
    methods, parameters = request.get("methods") or [], request.get("parameters") or {}
    if not isinstance(methods, list) or not isinstance(parameters, dict):
        out.reasons.append("'methods' must be a list and 'parameters' an object")
        return
    served = [(q, m) for q, m in capabilities if request.get("quantity") == q and m in methods]
    if not served:
        out.reasons.append(f"not a capability served here: {shown(request.get('quantity'))} by "
                           f"{shown(methods)} (served: "
                           + ", ".join(f"{q}/{m}" for q, m in capabilities) + ")")
        return
    out.quantity, out.method = served[0]
    params = parameters.get(out.method)
    errors = schema_errors(out.quantity, out.method, params)
    if errors:
        out.reasons.extend(f"invalid parameters: {e}" for e in errors)
        return
    where = ("request/" if "request" in info else "") + f"parameters/{out.method}"
    if (out.quantity, out.method) == FLOW:
        _formulation(params["electrolyte"]["formulation"], f"{where}/electrolyte", config,
                     out, judged)
        volume = _flow_volume(params["volume"], config, out, judged, f"{where}/volume")
        if not out.reasons:
            out.job = FlowJob(request_id=out.request_id, formulation=out.formulation,
                              volume=volume, raw=info)
    else:
        _formulation(params["formulation"], where, config, out, judged)
        temperature = params.get("temperature")
        _density_temperature(temperature, config, out, judged, f"{where}/temperature")
        if not out.reasons:
            out.job = DensityJob(request_id=out.request_id, formulation=out.formulation,
                                 temperature=temperature, raw=info)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (not a number, a bool, NaN, ±Infinity, or a
    JSON integer beyond float range such as ``10**400``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:
        return None
    return out if math.isfinite(out) else None


def _not_finite(value: Any) -> str:
    """``" (number out of range)"`` for a number that is not finite, else ``""``."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return " (number out of range)" if is_number and _number(value) is None else ""


def _formulation(items: list[dict], where: str, config: BenchConfig, out: ValidatedRequest,
                 judged: set[str]) -> None:
    """Read the (schema-valid) formulation ``items`` at path ``where`` into
    ``out.formulation``; every problem of the items appended to ``out.reasons``."""
    by_key = {c.inchikey: c for c in config.chemicals}
    low, high = MOLE_FRACTION_RANGE
    for i, item in enumerate(items):
        key, fraction = item["chemical"]["InChIKey"], item["fraction"]
        at = f"formulation/{i} ({key})"
        judged.add(f"{where}/formulation/{i}/fraction")
        if item["fraction_type"] != FRACTION_TYPE:
            out.reasons.append(f"{at}: fraction_type {shown(item['fraction_type'])} is not "
                               f"supported (only {FRACTION_TYPE})")
        number = _number(fraction)
        if number is None or not low <= number <= high:
            out.reasons.append(f"{at}: fraction {shown(fraction)} is not a mole fraction"
                               + _not_finite(fraction))
            continue
        if key not in by_key:
            names = {c.name.lower(): c for c in config.chemicals}
            hint = (f" (that is a name: give its InChIKey {names[key.lower()].inchikey})"
                    if key.lower() in names else "")
            out.reasons.append(f"{at}: chemical not known to this bench (by InChIKey){hint}")
            continue
        if key in out.formulation:
            out.reasons.append(f"{at}: chemical given twice")
        out.formulation[key] = number
    if not items:
        out.reasons.append("formulation is empty")


def _density_temperature(temperature: Any, config: BenchConfig, out: ValidatedRequest,
                         judged: set[str], path: str) -> None:
    """Check a density request's ``temperature`` (K or ``None``); sets ``out.temperature``."""
    judged.add(path)
    dens = config.densimeter
    number = _number(temperature)
    if dens is None:
        out.reasons.append("this bench has no densimeter")
    elif temperature is None:
        out.temperature = dens.temperature
    elif number is None or number <= 0:
        out.reasons.append(f"temperature {shown(temperature)} K is not a temperature"
                           + _not_finite(temperature))
    elif abs(number - dens.temperature) > TEMPERATURE_TOLERANCE:
        out.reasons.append(f"temperature {number:.6g} K is not available: this bench "
                           f"measures at {dens.temperature:.2f} K "
                           f"(±{TEMPERATURE_TOLERANCE} K, method {dens.method})")
    else:
        out.temperature = number


def _flow_volume(volume: Any, config: BenchConfig, out: ValidatedRequest, judged: set[str],
                 path: str) -> float:
    """Check a flow request's ``volume`` (mL) and that vials are configured; return it."""
    judged.add(path)
    number, capacity = _number(volume), config.settings.vial_capacity
    if number is None or number <= 0:
        out.reasons.append(f"volume {shown(volume)} mL is not a volume > 0" + _not_finite(volume))
    elif number > capacity:
        out.reasons.append(f"volume {number:.6g} mL is more than a vial takes "
                           f"({capacity:.3f} mL)")
    if not config.settings.vial_nodes:
        out.reasons.append("this bench has no vials configured (settings.vial_nodes)")
    return number or 0.0


def _finite(value: float | int) -> bool:
    """Finite, and within float range (a JSON integer can be larger than any float)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


# ---------------------------------------------------------------------- jobs files

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
    not valid Unicode (a lone surrogate escape); the first such problem found. Walks
    iteratively (no recursion limit)."""
    for kind, path in _walk(item):
        return _problem_text(kind, path)
    return None


def _walk(item: Any) -> Iterator[tuple[str, str]]:
    """Every ``(kind, path)`` problem in ``item``, iteratively: kind ``depth`` (nested deeper
    than :data:`MAX_DEPTH`; not walked further), ``number`` (not finite, or beyond float
    range), ``digits`` (an integer of more than :data:`MAX_INT_DIGITS` digits), ``text`` (a
    string that is not valid Unicode) or ``key`` (such a key; its value is not walked).
    Paths are ``a/b/0``, ``""`` for ``item`` itself."""
    stack: list[tuple[Any, str, int]] = [(item, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            yield "depth", path
        elif isinstance(value, int) and not isinstance(value, bool) \
                and value.bit_length() > _MAX_INT_BITS:
            yield "digits", path
        elif isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not _finite(value):
            yield "number", path
        elif isinstance(value, str) and not _valid_text(value):
            yield "text", path
        elif isinstance(value, dict):
            for key, sub in value.items():
                if not _valid_text(str(key)):
                    yield "key", path
                    continue
                stack.append((sub, f"{path}/{key}" if path else str(key), depth + 1))
        elif isinstance(value, list):
            stack.extend((sub, f"{path}/{i}" if path else str(i), depth + 1)
                         for i, sub in enumerate(value))


def _problem_text(kind: str, path: str) -> str:
    """The message for one problem of :func:`_walk`."""
    where = path or "the request"
    return {
        "depth": f"nested deeper than {MAX_DEPTH} levels at {where}",
        "number": f"number out of range at {where}",
        "digits": f"number out of range at {where} (an integer of more than "
                  f"{MAX_INT_DIGITS} digits)",
        "text": f"text that is not valid Unicode (a lone surrogate) at {where}",
        "key": f"a key that is not valid Unicode at {where}",
    }[kind]


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
