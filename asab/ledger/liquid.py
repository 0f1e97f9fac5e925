"""The library's own liquid model: what each tube, syringe and vessel holds, by origin.

A *content* is a mapping origin → mL, where an origin is a stock-solution name, the cleaning
solvent (:data:`SOLVENT`) or gas (:data:`GAS`); mixtures are just contents with several
origins. A tube segment holds an ordered list of :class:`Parcel` (plug flow, as described in
shared/docs/electrolyte_models.md, "Carry-over"): pushing V mL in at one end pushes V mL out of
the other. A syringe is well mixed, with its gas at the outlet (neMESYS modules are mounted
outlet up, so bubbles leave first). A vessel keeps the liquid that reaches it and vents gas.

This model is independent of the simulator's (``simulators/``): the planner predicts with it,
the executor replays each finished step through it, and tests compare it with the simulated
world. Volumes are mL throughout; only origins are tracked (their densities and compositions
come from the configuration).

Everything here is pure: functions return new lists/dicts and never touch their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

GAS = "gas"
"""Origin name of gas (ambient air or the pressurised gas) in a content."""

SOLVENT = "solvent"
"""Origin name of the cleaning solvent in a content."""

UNKNOWN = "unknown"
"""Origin name of liquid of unknown origin (after a failure or a manual intervention)."""

MERGE_VOLUME = 1e-4
"""mL: adjacent parcels smaller than this are merged into their neighbour (bounds the size of
the model; 0.1 µL is far below any dead volume of the bench)."""

SLICES = 16
"""Time slices a multi-pump stream is cut into where the streams merge (the outflow of each
inlet line over one stroke is uniform in time, since the flows are constant)."""

_EPS = 1e-12

Content = dict[str, float]
"""origin → mL."""


@dataclass(frozen=True)
class Parcel:
    """A volume of uniform content inside a tube.

    Attributes:
        volume: mL (> 0).
        shares: origin → volume fraction (sums to 1).
    """

    volume: float
    shares: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, content: Mapping[str, float]) -> Parcel | None:
        """The parcel holding ``content`` (origin → mL), or None when it is empty."""
        volume = math.fsum(v for v in content.values() if v > 0)
        if volume <= _EPS:
            return None
        return cls(volume, tuple(sorted((k, v / volume) for k, v in content.items() if v > 0)))

    def content(self) -> Content:
        """origin → mL."""
        return {k: f * self.volume for k, f in self.shares}

    def scaled(self, volume: float) -> Parcel:
        """The same content in ``volume`` mL."""
        return Parcel(volume, self.shares)

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.shares)


def add(a: Mapping[str, float], b: Mapping[str, float], factor: float = 1.0) -> Content:
    """``a + factor × b`` as a new content (zero entries dropped)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + factor * v
    return {k: v for k, v in out.items() if not abs(v) <= _EPS}  # NaN kept: it is refused


def volume_of(content: Mapping[str, float], *, gas: bool = True) -> float:
    """Total mL of ``content`` (without gas when ``gas`` is False)."""
    return math.fsum(v for k, v in content.items() if gas or k != GAS)


def liquid(content: Mapping[str, float]) -> Content:
    """``content`` without its gas."""
    return {k: v for k, v in content.items() if k != GAS}


def total(parcels: Iterable[Parcel]) -> Content:
    """The summed content of ``parcels``."""
    out: Content = {}
    for p in parcels:
        out = add(out, p.content())
    return out


def normalise(parcels: Iterable[Parcel]) -> list[Parcel]:
    """Merge neighbours of equal content and parcels below :data:`MERGE_VOLUME`."""
    out: list[Parcel] = []
    for p in parcels:
        if p.volume <= _EPS:
            continue
        if out and (out[-1].shares == p.shares or p.volume < MERGE_VOLUME
                    or out[-1].volume < MERGE_VOLUME):
            merged = Parcel.of(add(out[-1].content(), p.content()))
            if merged is not None:
                out[-1] = merged
            continue
        out.append(p)
    return out


def take_front(parcels: Sequence[Parcel], volume: float) -> tuple[list[Parcel], list[Parcel]]:
    """Split ``parcels`` after the first ``volume`` mL.

    Returns:
        ``(taken, rest)``; ``taken`` holds less than ``volume`` when ``parcels`` hold less.
    """
    taken: list[Parcel] = []
    rest = list(parcels)
    left = volume
    while rest and left > _EPS:
        p = rest[0]
        if p.volume <= left + _EPS:
            taken.append(rest.pop(0))
            left -= p.volume
        else:
            taken.append(p.scaled(left))
            rest[0] = p.scaled(p.volume - left)
            left = 0.0
    return taken, rest


def through(segment: Sequence[Parcel], capacity: float, incoming: Sequence[Parcel]
            ) -> tuple[list[Parcel], list[Parcel]]:
    """Push ``incoming`` (in flow order) into a segment that holds ``segment`` (in flow order,
    entry end first) and has ``capacity`` mL.

    Returns:
        ``(new_segment, outflow)``: the segment's content afterwards (entry end first) and what
        left it at the far end, in flow order. A segment of zero capacity passes everything on.
    """
    if capacity <= _EPS:
        return [], list(incoming)
    queue = list(reversed(incoming)) + list(segment)  # entry end first: newest at the front
    volume = math.fsum(p.volume for p in queue)
    keep, out = take_front(queue, min(capacity, volume))
    outflow = list(reversed(out))  # the far end leaves first
    return normalise(keep), normalise(outflow)


def resample(parcels: Sequence[Parcel], slices: int) -> list[Content]:
    """``parcels`` cut into ``slices`` equal volumes (flow order), each as a content."""
    volume = math.fsum(p.volume for p in parcels)
    if volume <= _EPS:
        return [{} for _ in range(slices)]
    out, rest = [], list(parcels)
    for _ in range(slices):
        taken, rest = take_front(rest, volume / slices)
        out.append(total(taken))
    return out


def merge_streams(streams: Sequence[Sequence[Parcel]], slices: int = SLICES) -> list[Parcel]:
    """The stream leaving a junction where ``streams`` (each in flow order, running during the
    same time) meet: slice by slice, the streams' contents mixed."""
    if len(streams) == 1:
        return list(streams[0])
    cut = [resample(s, slices) for s in streams]
    merged = []
    for i in range(slices):
        content: Content = {}
        for s in cut:
            content = add(content, s[i])
        p = Parcel.of(content)
        if p is not None:
            merged.append(p)
    return normalise(merged)


def take_from_syringe(content: Mapping[str, float], volume: float) -> tuple[Content, Content]:
    """Dispense ``volume`` mL from a syringe holding ``content``: gas first, then the well
    mixed liquid.

    Returns:
        ``(dispensed, left)``; ``dispensed`` holds less than ``volume`` when the syringe holds
        less.
    """
    gas = min(content.get(GAS, 0.0), max(volume, 0.0))
    liq = liquid(content)
    liq_volume = volume_of(liq)
    part = min(max(volume - gas, 0.0), liq_volume)
    frac = part / liq_volume if liq_volume > _EPS else 0.0
    out = {k: v * frac for k, v in liq.items()}
    if gas > 0:
        out[GAS] = gas
    left = add(content, out, -1.0)
    return {k: v for k, v in out.items() if v > _EPS}, {k: v for k, v in left.items() if v > _EPS}


def draw_from_vessel(content: Mapping[str, float], volume: float, *, gas_supply: bool = False
                     ) -> tuple[Content, Content]:
    """Aspirate ``volume`` mL from a vessel holding ``content``: its liquid (well mixed) first,
    then air once it is empty; a gas supply yields gas only.

    Returns:
        ``(drawn, left)``.
    """
    if gas_supply:
        return {GAS: volume}, dict(content)
    liq = liquid(content)
    have = volume_of(liq)
    part = min(volume, have)
    frac = part / have if have > _EPS else 0.0
    drawn = {k: v * frac for k, v in liq.items()}
    if volume - part > _EPS:
        drawn[GAS] = volume - part
    left = {k: v * (1.0 - frac) for k, v in liq.items()}
    return ({k: v for k, v in drawn.items() if v > _EPS},
            {k: v for k, v in left.items() if v > _EPS})
