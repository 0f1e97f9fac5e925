"""The bench ledger: the consumable state of one bench, persisted in its state folder."""

from asab.ledger.model import BenchLedger, LedgerChange, VesselKind, initial_ledger

__all__ = ["BenchLedger", "LedgerChange", "VesselKind", "initial_ledger"]
