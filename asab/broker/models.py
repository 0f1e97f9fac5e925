"""Pydantic models of the FINALES2 wire objects (shared docs: finales2_api.md, "Wire models").

Incoming objects (``RequestInfo``, ``ResultInfo``, ``Capability``, ``Tenant``...) ignore
unknown fields so that a newer broker does not break the tenant; the objects asab *sends*
(``Request``, ``Result``) forbid them. Statuses are plain strings (the broker may add new
ones); the values known for FINALES2 1.1.0 are listed in :data:`REQUEST_STATUSES` and
:data:`RESULT_STATUSES`. ``ctime`` values are the broker's naive timestamps, kept as strings:
they change when a status changes, so keep your own times (the journal does).

Units inside ``parameters`` and ``data`` are those of the capability schemas: temperature in
K, density in g/cm³, dynamic viscosity in mPa·s, volume in mL, fractions in molPerMol.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

REQUEST_STATUSES = ("pending", "reserved", "resolved", "retracted", "unsolicited")
"""Request statuses of FINALES2 1.1.0."""
RESULT_STATUSES = ("original", "deleted", "amended")
"""Result statuses of FINALES2 1.1.0."""

NewRequestStatus = Literal["pending", "reserved", "retracted"]
"""The statuses a client may set with ``POST /requests/{id}/update_status/``."""
NewResultStatus = Literal["deleted", "amended"]  # FINALES2 1.1.0 refuses "original"
"""The statuses a client may set with ``POST /results/{id}/update_status/``."""


class _Incoming(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Request(BaseModel):
    """A request for ``quantity`` by one of ``methods``; ``parameters`` keyed by method name."""

    model_config = ConfigDict(extra="forbid")
    quantity: str
    methods: list[str]
    parameters: dict[str, Any] = Field(
        description="{method: parameters}; values left untyped so that a malformed request "
                    "still parses and is rejected by the schema check, not skipped")
    tenant_uuid: str = Field(description="the requester's tenant uuid")


class RequestInfo(_Incoming):
    """A stored request: ``{"uuid", "ctime", "status", "request": Request}``."""

    uuid: str
    ctime: str | None = None
    status: str
    request: Request


class Result(BaseModel):
    """A result as posted: note ``method`` is a list with exactly one element.

    Attributes:
        data: result payload, valid against the capability's ``json_schema_result_output``.
        parameters: ``{method: actual parameters}``, valid against the specification schema.
        tenant_uuid: *our* tenant uuid.
        request_uuid: the request answered (``""`` for an unsolicited result).
    """

    model_config = ConfigDict(extra="forbid")
    data: dict[str, Any]
    quantity: str
    method: list[str]
    parameters: dict[str, dict[str, Any]]
    tenant_uuid: str
    request_uuid: str = ""

    @field_validator("method")
    @classmethod
    def _one_method(cls, value: list[str]) -> list[str]:
        if len(value) != 1:
            raise ValueError(f"a result names exactly one method, got {value!r}")
        return value


class ResultInfo(_Incoming):
    """A stored result: ``{"uuid", "ctime", "status", "result": Result}``."""

    uuid: str
    ctime: str | None = None
    status: str
    result: Result


class Capability(_Incoming):
    """One capability as ``GET /capabilities/`` lists it (two JSON Schemas)."""

    quantity: str
    method: str
    json_schema_specifications: dict[str, Any]
    json_schema_result_output: dict[str, Any]


class Limitation(_Incoming):
    """The registered limitations of one capability (``GET /limitations/``)."""

    quantity: str
    method: str
    limitations: Any


class Tenant(_Incoming):
    """A registered tenant (``GET /tenants/``)."""

    tenant_uuid: str
    name: str
    limitations: Any = None
    contact_person: str | None = None
    is_active: bool = True
