"""FINALES2 tenant side: broker client, wire models, settings, local validation, journal.

- :mod:`asab.broker.client` - :class:`FinalesClient` (exact paths, token cache, retries);
- :mod:`asab.broker.models` - pydantic models of the wire objects;
- :mod:`asab.broker.settings` - :class:`BrokerSettings` (TOML file and/or environment);
- :mod:`asab.broker.validation` - jsonschema and finiteness checks before sending;
- :mod:`asab.broker.journal` - :class:`Journal`, the tenant's append-only SQLite log.
"""

from asab.broker.client import FinalesClient, PostOutcomeUnknown
from asab.broker.journal import Event, Journal, JournalError, JournalState
from asab.broker.models import (
    Capability,
    Limitation,
    Request,
    RequestInfo,
    Result,
    ResultInfo,
    Tenant,
)
from asab.broker.settings import BrokerSettings
from asab.broker.validation import LocalValidationError

__all__ = [
    "BrokerSettings", "Capability", "Event", "FinalesClient", "Journal", "JournalError",
    "JournalState", "Limitation", "LocalValidationError", "PostOutcomeUnknown", "Request",
    "RequestInfo", "Result", "ResultInfo", "Tenant",
]
