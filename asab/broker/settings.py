"""Connection settings of the FINALES2 client, from a TOML file and/or the environment.

Credentials never come from the command line (they would show in ``ps`` and shell history).
Example ``DIR/broker.toml`` (all times in s; keep the file readable by the operator only)::

    url = "http://127.0.0.1:13371"
    username = "asab"
    password = "..."
    tenant_uuid = "3f1c...-..."
    timeout = 10.0          # per HTTP call (connect, read, write, pool)
    token_margin = 300.0    # log in again this long before the token's exp
    max_attempts = 4        # tries of an idempotent call on a transient error
    backoff_base = 0.5      # first backoff; doubles each retry
    backoff_max = 8.0       # cap of one backoff

Environment variables override the file: ``ASAB_BROKER_URL``, ``ASAB_BROKER_USERNAME``,
``ASAB_BROKER_PASSWORD``, ``ASAB_TENANT_UUID``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from asab.errors import ConfigError, Problem
from asab.names import did_you_mean, known_names

ENVIRONMENT = {
    "ASAB_BROKER_URL": "url",
    "ASAB_BROKER_USERNAME": "username",
    "ASAB_BROKER_PASSWORD": "password",
    "ASAB_TENANT_UUID": "tenant_uuid",
}
"""Environment variable → settings field."""

BROKER_FILE = "broker.toml"
"""File name looked for when :meth:`BrokerSettings.load` is given a folder."""


class BrokerSettings(BaseModel):
    """Where the broker is, who we are, and how patient the client is.

    Defaults: the 24 h token lifetime of FINALES2 makes a 5 min ``token_margin`` ample (the
    shared docs ask for "a few minutes"); ``max_attempts``/backoff bound one idempotent call
    to about 0.5 + 1 + 2 = 3.5 s of sleeping plus ``max_attempts`` × ``timeout``.
    """

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="broker base URL, http(s)://host:port")
    username: str
    password: SecretStr
    tenant_uuid: str
    timeout: float = Field(default=10.0, gt=0, description="s, per HTTP call")
    token_margin: float = Field(default=300.0, ge=0, description="s before exp")
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_base: float = Field(default=0.5, ge=0, description="s")
    backoff_max: float = Field(default=8.0, ge=0, description="s")

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"broker url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @classmethod
    def load(cls, path: str | Path | None = None,
             env: Mapping[str, str] | None = None) -> BrokerSettings:
        """Read ``path`` (a TOML file, or a folder holding ``broker.toml``), then the environment.

        Args:
            path: TOML file or folder; ``None`` reads the environment only. A folder without
                ``broker.toml`` is allowed (environment only).
            env: the environment (default ``os.environ``); its variables win over the file.

        Raises:
            ConfigError: unreadable TOML, unknown fields, or a missing/invalid field (the
                password is never echoed).
        """
        source = "environment (no broker file given)"
        values: dict[str, object] = {}
        if path is not None:
            file = Path(path)
            if file.is_dir():
                file = file / BROKER_FILE
                source = f"environment (no {BROKER_FILE} in {path})"
            if file.is_file() or not Path(path).is_dir():
                values, source = _read_toml(file), file.name
        for var, field in ENVIRONMENT.items():
            value = (os.environ if env is None else env).get(var)
            if value:
                values[field] = value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError([Problem(source, None, _reason(e)) for e in exc.errors()]) from None


_VARIABLE = {field: var for var, field in ENVIRONMENT.items()}


def _reason(error: Mapping) -> str:
    """One validation error as a sentence that says where the value can be given."""
    field = ".".join(map(str, error["loc"]))
    where = f"`{field} = \"...\"` under [broker] in {BROKER_FILE}"
    if field in _VARIABLE:
        where = f"${_VARIABLE[field]}, or {where}"
    if error["type"] == "missing":
        return f"{field}: not given; set {where}"
    if error["type"] == "extra_forbidden":
        keys = list(BrokerSettings.model_fields)
        return (f"{field}: not a broker setting{did_you_mean(field, keys)}; "
                f"{known_names(keys, 'known')}")
    return f"{field}: {error['msg']} (set {where})"


def _read_toml(file: Path) -> dict[str, object]:
    try:
        with file.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError([Problem(file.name, None, f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(file.name, getattr(exc, "lineno", None), str(exc))]) from None
    return data.get("broker", data) if isinstance(data.get("broker"), dict) else data
