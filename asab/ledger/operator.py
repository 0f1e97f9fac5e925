"""What operators tell the ledger after manual work: a vessel refilled or emptied, a line's
content. Each change is written with a timestamp and the operator's note
(``asab bench refill/empty/set-line``, ``POST /bench/...`` on the actions server)."""

from __future__ import annotations

from asab.ledger.liquid import GAS, SOLVENT, UNKNOWN, Parcel
from asab.ledger.model import BenchLedger, LedgerChange, VesselKind
from asab.ledger.store import LedgerStore


def _origin(ledger: BenchLedger, store: LedgerStore, node: str) -> str:
    vessel = ledger.vessel(node)
    if vessel.kind is VesselKind.SOLVENT:
        return SOLVENT
    names = [st.name for st in store.config.stocks if st.reservoir == node]
    return names[0] if names else UNKNOWN


def refill(store: LedgerStore, node: str, volume: float, note: str = "") -> BenchLedger:
    """Stock reservoir or solvent bottle ``node`` now holds ``volume`` mL of its liquid.

    Raises:
        KeyError: ``node`` is no vessel. ValueError: not a reservoir or the solvent bottle,
            or ``volume`` negative, not finite or above its capacity.
    """
    def change(ledger: BenchLedger) -> BenchLedger:
        vessel = ledger.vessel(node)
        if vessel.kind not in (VesselKind.STOCK, VesselKind.SOLVENT):
            raise ValueError(f"{node} is a {vessel.kind} vessel; only a stock reservoir or the "
                             "solvent bottle is refilled (use `asab bench empty` for wastes "
                             "and vials)")
        if not 0 <= volume <= (vessel.capacity or float("inf")) or volume != volume:
            raise ValueError(f"{volume!r} mL is not a level of {node} (0 … {vessel.capacity:g} mL)")
        vessel.content = {_origin(ledger, store, node): volume} if volume > 0 else {}
        ledger.waiting = None
        ledger.note(LedgerChange.REFILL, node, f"now {volume:.2f} mL", note)
        return ledger
    return store.update(change)


def empty(store: LedgerStore, node: str, note: str = "") -> BenchLedger:
    """Waste container, vial (or any vessel) ``node`` has been emptied."""
    def change(ledger: BenchLedger) -> BenchLedger:
        vessel = ledger.vessel(node)
        if vessel.kind is VesselKind.GAS:
            raise ValueError(f"{node} is a gas supply; there is nothing to empty")
        vessel.content = {}
        ledger.waiting = None
        ledger.note(LedgerChange.EMPTY, node, "emptied", note)
        return ledger
    return store.update(change)


def set_line(store: LedgerStore, label: str, origin: str, note: str = "") -> BenchLedger:
    """Tubing segment ``label`` holds ``origin`` (a stock name, ``solvent``, ``gas`` or
    ``unknown``) over its whole volume.

    Raises:
        KeyError: no such segment. ValueError: unknown origin.
    """
    edges = {e.label: e.dead_volume for e in store.config.tubing.edges}
    origins = {st.name for st in store.config.stocks} | {SOLVENT, GAS, UNKNOWN}
    if label not in edges:
        raise KeyError(f"no tubing segment {label!r}")
    if origin not in origins:
        raise ValueError(f"unknown liquid {origin!r}; one of: {', '.join(sorted(origins))}")

    def change(ledger: BenchLedger) -> BenchLedger:
        if edges[label] > 0:
            ledger.set_line(label, [Parcel(edges[label], ((origin, 1.0),))])
        ledger.note(LedgerChange.SET_LINE, label, f"holds {origin}", note)
        return ledger
    return store.update(change)
