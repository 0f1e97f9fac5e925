"""What operators tell the ledger after manual work: a vessel refilled or emptied, a line's
content. Each change is written with a timestamp and the operator's note
(``asab bench refill/empty/set-line``, ``POST /bench/...`` on the actions server)."""

from __future__ import annotations

from asab.config import BenchConfig
from asab.ledger.liquid import GAS, SOLVENT, UNKNOWN, Parcel, total, volume_of
from asab.ledger.model import BenchLedger, LedgerChange, VesselKind, mass_of
from asab.ledger.store import LedgerStore
from asab.names import UnknownName, did_you_mean, known_names


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
        if not 0 <= volume <= (vessel.capacity or float("inf")):  # NaN fails too
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
            ledger.films.pop(label, None)  # the operator's word: the tube holds only that
            ledger.pockets.pop(label, None)
        ledger.note(LedgerChange.SET_LINE, label, f"holds {origin}", note)
        return ledger
    return store.update(change)


# ---------------------------------------------------------------------- looking and naming
def check_vessel(ledger: BenchLedger, node: str) -> str:
    """``node`` when it is a vessel of the ledger's bench.

    Raises:
        UnknownName: (a KeyError) naming the closest vessels ("did you mean …").
    """
    if node not in ledger.vessels:
        hint = did_you_mean(node, ledger.vessels) or f"; {known_names(ledger.vessels, 'vessels')}"
        raise UnknownName(f"{node!r} is not a vessel of bench {ledger.bench}{hint}")
    return node


def check_segment(config: BenchConfig, label: str) -> str:
    """``label`` when it is a tubing segment (edge label) of ``config``.

    Raises:
        UnknownName: (a KeyError) naming the closest segments.
    """
    labels = [e.label for e in config.tubing.edges]
    if label not in labels:
        raise UnknownName(f"no tubing segment {label!r} on bench {config.name}"
                          f"{did_you_mean(label, labels)}")
    return label


def liquids(config: BenchConfig) -> list[str]:
    """What ``set_line`` accepts: every stock name, ``solvent``, ``gas`` and ``unknown``."""
    return [st.name for st in config.stocks] + [SOLVENT, GAS, UNKNOWN]


def describe_content(content: dict[str, float], *, empty: str = "empty") -> str:
    """``"9.95 mL 1.5M-LiPF6-EMC, 0.0042 mL gas"`` (largest first, traces below 1 nL left
    out; ``empty`` when nothing)."""
    parts = [f"{v:.2f} mL {k}" if v >= 0.01 else f"{v:.2g} mL {k}"
             for k, v in sorted(content.items(), key=lambda kv: -kv[1]) if v > 1e-6]
    return ", ".join(parts) or empty


def status(config: BenchConfig, ledger: BenchLedger, *, events: int = 10) -> dict:
    """What ``asab bench status`` and ``GET /bench/status`` show, JSON-ready.

    Keys: ``bench``, ``updated``, ``out_of_service``, ``waiting``; ``vessels`` (node, kind,
    stock names for a reservoir, ``volume`` mL of liquid, ``capacity`` mL or null, ``content``
    origin → mL), ``balance`` (the vessel on the pan, its ``load`` g against ``capacity`` g; null
    without a balance), ``syringes`` (pump, capacity, volume, content), ``lines`` (segment,
    ``volume`` mL, ``main`` origin, ``content`` origin → mL) and the last ``events`` events.
    """
    stocks: dict[str, list[str]] = {}
    for st in config.stocks:
        stocks.setdefault(st.reservoir, []).append(st.name)
    vessels = [{"node": v.node, "kind": str(v.kind), "stocks": stocks.get(v.node, []),
                "volume": v.volume, "capacity": v.capacity, "content": dict(v.content)}
               for v in ledger.vessels.values()]
    balance = None
    if config.balance is not None:
        on_pan = ledger.vessels.get(config.balance.vessel)
        balance = {"vessel": config.balance.vessel,
                   "load": mass_of(config, on_pan.content) if on_pan else 0.0,
                   "capacity": config.balance.capacity}
    syringes = [{"pump": s.pump, "capacity": s.capacity, "volume": s.volume,
                 "content": dict(s.content)} for s in ledger.syringes.values()]
    lines = []
    for label in sorted(ledger.lines):
        content = total(ledger.line(label))
        main = max(content, key=content.__getitem__) if content else GAS
        lines.append({"segment": label, "volume": volume_of(content), "main": main,
                      "content": content})
    return {"bench": ledger.bench, "updated": ledger.updated,
            "out_of_service": ledger.out_of_service, "waiting": ledger.waiting,
            "vessels": vessels, "balance": balance, "syringes": syringes, "lines": lines,
            "events": [e.model_dump(mode="json") for e in ledger.log[-events:]] if events else []}


def check_note(note: str, limit: int = 500) -> str:
    """``note`` when it is a usable operator's note: at most ``limit`` characters, no control
    characters (it is shown in tables and logs).

    Raises:
        ValueError: too long or holding a control character.
    """
    if len(note) > limit:
        raise ValueError(f"a note has at most {limit} characters, not {len(note)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in note):
        raise ValueError("a note may not hold control characters (line breaks, tabs, escapes)")
    return note
