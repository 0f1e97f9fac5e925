"""Liquid parcels: amounts of species plus gas, the currency of the simulated world."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Liquid:
    """A parcel of liquid (and possibly gas).

    Attributes:
        moles: InChIKey → amount in mol.
        volume: liquid volume in mL (ideal mixing of the parcels' volumes).
        mass: liquid mass in g.
        gas: gas volume in mL (air or pressurised gas; weightless here).
    """

    moles: dict[str, float] = field(default_factory=dict)
    volume: float = 0.0
    mass: float = 0.0
    gas: float = 0.0

    @property
    def total_volume(self) -> float:
        """Liquid plus gas volume in mL."""
        return self.volume + self.gas

    def copy(self) -> "Liquid":
        return Liquid(dict(self.moles), self.volume, self.mass, self.gas)

    def add(self, other: "Liquid") -> None:
        """Merge ``other`` into this parcel (in place)."""
        for k, n in other.moles.items():
            self.moles[k] = self.moles.get(k, 0.0) + n
        self.volume += other.volume
        self.mass += other.mass
        self.gas += other.gas

    def take(self, total_volume: float) -> "Liquid":
        """Remove ``total_volume`` mL (liquid and gas in proportion) and return it."""
        tv = self.total_volume
        if tv <= 0 or total_volume <= 0:
            return Liquid()
        f = min(1.0, total_volume / tv)
        out = Liquid({k: n * f for k, n in self.moles.items()}, self.volume * f, self.mass * f, self.gas * f)
        for k in self.moles:
            self.moles[k] *= 1.0 - f
        self.volume *= 1.0 - f
        self.mass *= 1.0 - f
        self.gas *= 1.0 - f
        return out

    def mole_fractions(self) -> dict[str, float]:
        """InChIKey → mole fraction (empty if no liquid)."""
        total = sum(self.moles.values())
        if total <= 0:
            return {}
        return {k: n / total for k, n in self.moles.items() if n > 0}
