"""FINALES2 result bodies from asab's job records (shared docs: finales2_api.md).

``density``/``vibrating_tube_densimetry`` (:func:`density_result`, from a
:class:`~asab.actions.job.JobRecord`)::

    data = {"run_info": RunInfo,
            "density":   {"values": [g/cm³ per valid repetition], "temperature": K,
                          "meta": {"success": bool, "rating": 0..5}},
            "viscosity": {"values": [mPa·s per valid repetition], "temperature": K,
                          "meta": {...}} | null}

``electrolyte``/``flow`` (:func:`flow_result`, from a :class:`~asab.actions.vial.FlowRecord`)::

    data = {"run_info": RunInfo,
            "electrolyte": {"formulation": [...made...], "volume": mL in the vial,
                            "location": {"address", "detail_1": bench, "detail_2": vial},
                            "meta": {...}}}

Conventions:

- ``run_info.formulation``, ``electrolyte.formulation`` and the result's ``parameters`` carry
  the composition actually made (the record's ``achieved``; the requested one only when
  nothing was planned), every chemical of the request or the mix listed.
- Units: density g/cm³, dynamic viscosity mPa·s (the schema's "g/cm3" note on viscosity is a
  known bug of the published schema), temperature K, volume mL.
- Failure: ``meta.success`` false, rating 0 and **no values**: ``values`` is ``[]`` (the
  schema demands a list of numbers, an empty list is allowed). Values of a failed job stay in
  the local record only. Viscosity is ``null`` when the instrument gave no viscosity at all.
  For a flow failure the schema demands a number for ``volume``: it is the volume known to
  be in the vial (0.0 when nothing was pushed towards it, the syringes' bookkeeping after a
  failure part-way); when even that is unknown no result is built (:class:`ResultError`) —
  give the request back instead.
- ``internal_reference`` = :func:`internal_reference` (run id / request uuid / attempt).
- No NaN or Infinity ever (:func:`assert_finite`); every body is validated against the
  capability's ``json_schema_specifications`` (parameters) and ``json_schema_result_output``
  (data) with jsonschema before it is returned.

Rating rule (:func:`rating`), per quantity, integer 0–5:

    failed (no valid value, or the job failed)             → 0
    otherwise 5 − (number of invalid repetitions)
                − distance band of ‖achieved − requested‖ (mole fractions):
                    d ≤ tol → 0;  d ≤ 10·tol → 1;  d ≤ 0.01 → 2;  d > 0.01 → 3
                − one per quality flag of the record (issue 14: the measured density
                  disagrees with the predicted cell content; carry-over above tolerance)
    clamped to 1…5 (a successful quantity never rates 0).

``tol`` is ``settings.makeable_tolerance``. A flow delivery has no repetitions; its invalid
count is 1 when the delivered volume differs from the requested one by more than 1 %, and it
counts as successful once the whole volume is in the vial (``FlowRecord.delivered``), even if
cleaning the lines failed afterwards.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import jsonschema

from asab.actions.job import JobRecord
from asab.actions.vial import FlowRecord
from asab.broker.validation import non_finite_path
from asab.config import BenchConfig
from asab.errors import AsabError
from asab.requests import capability_schema

DENSITY = ("density", "vibrating_tube_densimetry")
FLOW = ("electrolyte", "flow")

VOLUME_TOLERANCE = 0.01
"""Relative volume deviation of a flow delivery still counted as valid (1 %)."""

CHEMICAL_DATA_UNCERTAINTY = 0.0005
"""Uncertainty given with molar masses (g/mol) and densities (g/cm³) from chemicals.csv: half
a unit of its last tabulated decimal (values are tabulated to 3 decimals)."""

_REF_NAMESPACE = uuid.UUID("5b1d2f0e-6a43-4f0c-9d1e-a5ab0a5ab000")
"""Namespace of the uuid5 of a formulation (asab's own, fixed)."""


class ResultError(AsabError):
    """No truthful, schema-valid result body can be built from this record."""


# ---------------------------------------------------------------------- keys, rating, checks
def internal_reference(run_id: str, request_uuid: str, attempt: int) -> str:
    """Unique key of one run of one request: ``"<run_id>/<request_uuid>/<attempt>"``.

    Deterministic, so a re-post after a network error can be recognised (quirk 3).

    Raises:
        ValueError: an empty part, a ``/`` inside a part, or ``attempt`` < 1.
    """
    if not run_id or not request_uuid or "/" in run_id or "/" in request_uuid:
        raise ValueError(f"run id and request uuid must be non-empty without '/': "
                         f"{run_id!r}, {request_uuid!r}")
    if int(attempt) < 1:
        raise ValueError(f"attempt counts from 1, got {attempt!r}")
    return f"{run_id}/{request_uuid}/{int(attempt)}"


def distance_band(distance: float | None, tolerance: float) -> int:
    """Rating points lost for the requested-vs-achieved distance (see the module docstring).
    An unknown distance (``None``) loses the most."""
    if distance is None or not math.isfinite(distance):
        return 3
    if distance <= tolerance:
        return 0
    if distance <= 10 * tolerance:
        return 1
    return 2 if distance <= 0.01 else 3


def rating(success: bool, invalid: int, distance: float | None, tolerance: float,
           flags: int = 0) -> int:
    """The 0–5 rating of one quantity (rule in the module docstring).

    Args:
        success: the quantity has at least one valid value and the job succeeded.
        invalid: invalid repetitions (or 1 for a flow volume off by more than 1 %).
        distance: Euclidean distance achieved ↔ requested, mole fractions.
        tolerance: ``settings.makeable_tolerance``.
        flags: the record's quality flags (``JobRecord.quality_flags``: the measured density
            disagrees with the predicted cell content, carry-over above the tolerance).
    """
    if not success:
        return 0
    return max(1, min(5, 5 - max(0, int(invalid)) - distance_band(distance, tolerance)
                      - max(0, int(flags))))


def assert_finite(payload: Any) -> None:
    """Refuse NaN and ±Infinity anywhere in ``payload`` (the broker would store null).

    Raises:
        ResultError: naming the JSON path of the first non-finite number
            (:func:`asab.broker.validation.non_finite_path`).
    """
    where = non_finite_path(payload)
    if where is not None:
        raise ResultError(f"non-finite number at {where}")


def validate_result(quantity: str, method: str, parameters: Any, data: Any) -> None:
    """Check result ``parameters`` and ``data`` against the vendored capability schemas.

    Raises:
        ResultError: listing every violation (path: message).
    """
    doc = capability_schema(quantity, method)
    problems = []
    for part, schema, value in (("parameters", doc["json_schema_specifications"], parameters),
                                ("data", doc["json_schema_result_output"], data)):
        validator = jsonschema.Draft202012Validator(schema)
        for e in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path))):
            problems.append(f"{part}/{'/'.join(map(str, e.absolute_path))}: {e.message}")
    if problems:
        raise ResultError(f"{quantity}/{method} result invalid: " + "; ".join(problems))


# ---------------------------------------------------------------------- shared parts
def formulation_list(fractions: dict[str, float], config: BenchConfig) -> list[dict[str, Any]]:
    """FINALES2 formulation from chemical name (or InChIKey) → mole fraction."""
    out = []
    for name, x in fractions.items():
        chem = config.chemical(name)
        out.append({"chemical": {"SMILES": chem.smiles, "InChIKey": chem.inchikey},
                    "fraction": float(x), "fraction_type": "molPerMol"})
    return out


def made_composition(record: JobRecord | FlowRecord) -> dict[str, float]:
    """Name → mole fraction actually made, listing every requested chemical too."""
    made = record.achieved if record.achieved is not None else record.requested
    return {**{k: 0.0 for k in record.requested}, **made}


def chemicals_info(names: list[str], config: BenchConfig) -> dict[str, dict[str, Any]]:
    """InChIKey → ChemicalInfo from the bench's chemicals list (batch data are per stock
    solution, see ``formulation_info.batch``)."""
    out = {}
    for name in names:
        chem = config.chemical(name)
        u = CHEMICAL_DATA_UNCERTAINTY
        out[chem.inchikey] = {
            "name": chem.name, "molar_mass": [chem.molar_mass, u],
            "density": [chem.density, u] if chem.density is not None else None,
            "batch": None, "manufacturer": None, "manufacturing_date": None}
    return out


def run_info(record: JobRecord | FlowRecord, config: BenchConfig, reference: str,
             location: dict[str, Any] | None) -> dict[str, Any]:
    """The RunInfo block: what was made, the unique reference, formulation and chemicals."""
    made = made_composition(record)
    stocks = [config.stock(n) for n in sorted(record.stock_drawn) if record.stock_drawn[n] > 0]
    batches = sorted({s.batch for s in stocks if s.batch})
    return {
        "formulation": formulation_list(made, config),
        "internal_reference": reference,
        "formulation_info": {
            "name": getattr(record, "sample", "") or record.job_id,
            "uuid": str(uuid.uuid5(_REF_NAMESPACE, reference)),
            "preparation_date": _date(record.started),
            "batch": "stocks " + ", ".join(batches) if batches else None,
            "location": location,
        },
        "chemicals_info": chemicals_info(list(made), config),
    }


def _date(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).date().isoformat()


def _finish(quantity: str, method: str, parameters: dict, data: dict, record,
            tenant_uuid: str) -> dict[str, Any]:
    body = {"data": data, "quantity": quantity, "method": [method],
            "parameters": {method: parameters}, "tenant_uuid": tenant_uuid,
            "request_uuid": record.request_id}
    assert_finite(body)
    validate_result(quantity, method, parameters, data)
    return body


def _check_servable(record: JobRecord | FlowRecord) -> None:
    if record.status == "rejected":
        raise ResultError(f"job {record.job_id} was rejected ({record.reason}): "
                          "there is no result to post")


# ---------------------------------------------------------------------- density
def _quantity(record: JobRecord, which: str, tolerance: float) -> dict[str, Any] | None:
    """One quantity block (density or viscosity) from the record's measurement."""
    m = record.measurement
    reps = m.repetitions if m is not None else []
    values = [getattr(r, which) for r in reps]
    if which == "viscosity" and reps and all(v is None for v in values):
        return None  # the method measured no viscosity
    valid = [v for r, v in zip(reps, values)
             if getattr(r, f"{which}_valid") and v is not None and math.isfinite(v)]
    temps = [getattr(r, f"{which}_temperature") for r in reps]
    temps = [t for t in temps if t is not None and math.isfinite(t)]
    success = record.status == "succeeded" and bool(valid)
    return {
        "values": valid if success else [],
        "temperature": math.fsum(temps) / len(temps) if temps else None,
        "meta": {"success": success,
                 "rating": rating(success, len(reps) - len(valid), record.distance, tolerance,
                                  len(getattr(record, "quality_flags", None) or ()))},
    }


def density_result(record: JobRecord, config: BenchConfig, *, tenant_uuid: str,
                   reference: str) -> dict[str, Any]:
    """The FINALES2 ``Result`` body for a density/viscosity job.

    Args:
        record: a succeeded or failed job (not a rejected one).
        config: the bench configuration (chemical data, densimeter temperature).
        tenant_uuid: our tenant uuid.
        reference: :func:`internal_reference` of this run.

    Returns:
        ``{"data", "quantity", "method": [method], "parameters": {method: {...}},
        "tenant_uuid", "request_uuid"}``, schema-valid and finite.

    Raises:
        ResultError: a rejected job, a non-finite number or a schema violation.
    """
    _check_servable(record)
    tol = config.settings.makeable_tolerance
    density = _quantity(record, "density", tol)
    data = {"run_info": run_info(record, config, reference, None), "density": density,
            "viscosity": _quantity(record, "viscosity", tol)}
    temperature = density["temperature"]
    if temperature is None and config.densimeter is not None:
        temperature = config.densimeter.temperature
    parameters = {"formulation": data["run_info"]["formulation"], "temperature": temperature}
    return _finish(*DENSITY, parameters, data, record, tenant_uuid)


# ---------------------------------------------------------------------- flow
def vial_location(config: BenchConfig, vial: str | None, address: str | None = None) -> dict:
    """Location of a vial: ``{"address", "detail_1": bench name, "detail_2": vial node}``;
    ``address`` is the lab's postal address from ``[tenant] address`` — empty when none is
    configured (the bench's name is not an address; it is in ``detail_1``)."""
    return {"address": address or "", "detail_1": f"bench {config.name}",
            "detail_2": vial}


def flow_result(record: FlowRecord, config: BenchConfig, *, tenant_uuid: str, reference: str,
                address: str | None = None) -> dict[str, Any]:
    """The FINALES2 ``Result`` body for an electrolyte delivery into a vial.

    Args:
        record: a succeeded or failed delivery (not a rejected one).
        config: the bench configuration.
        tenant_uuid: our tenant uuid.
        reference: :func:`internal_reference` of this run.
        address: postal address of the bench for ``location`` (default the bench name).

    Raises:
        ResultError: a rejected job, an unknown delivered volume after a failure, a non-finite
            number or a schema violation.
    """
    _check_servable(record)
    if record.volume_delivered is None:
        raise ResultError(f"job {record.job_id}: the volume in vial {record.vial} is unknown "
                          "after the failure; no result can be posted truthfully")
    volume = record.volume_delivered
    success = record.status == "succeeded" or record.delivered  # cleaning may fail after
    off = abs(volume - record.volume_requested) > VOLUME_TOLERANCE * record.volume_requested
    location = vial_location(config, record.vial, address)
    info = run_info(record, config, reference, location)
    electrolyte = {
        "formulation": info["formulation"], "volume": volume, "location": location,
        "meta": {"success": success, "rating": rating(
            success, int(off), record.distance, config.settings.makeable_tolerance)},
    }
    parameters = {"electrolyte": {"formulation": info["formulation"]}, "volume": volume}
    return _finish(*FLOW, parameters, {"run_info": info, "electrolyte": electrolyte}, record,
                   tenant_uuid)


def result_body(record: JobRecord | FlowRecord, config: BenchConfig, *, tenant_uuid: str,
                reference: str, address: str | None = None) -> dict[str, Any]:
    """:func:`flow_result` or :func:`density_result`, by the record's type."""
    if isinstance(record, FlowRecord):
        return flow_result(record, config, tenant_uuid=tenant_uuid, reference=reference,
                           address=address)
    return density_result(record, config, tenant_uuid=tenant_uuid, reference=reference)
