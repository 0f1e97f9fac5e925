"""Residues of the simulated world: wall films, their wash-out, unswept pockets, evaporation.

The plug-flow segments of :mod:`simulators.fluidics` move sharp plugs. Real tubes keep some of
what passed: a gas push leaves a wall film, the next liquid washes it out only gradually,
fittings hold unswept pockets, and volatile solvents evaporate from films into the gas. This
module keeps that state per tubing segment and applies it on every push of every clock step.
Parameters and their sources: ``simulators/data/residues.toml``.

Per segment (dead volume C, inner radius R, tube volume V = πR²L from edges.csv):

* **Wall layer** — three well-mixed stages in series (liquid joining the layer enters the
  first; passing liquid moves each stage's content on to the next, and out of the third, at
  rate k per tube volume θ). The share of what joined at once that is still there after θ is
  then exactly S(θ) below (the survival of an Erlang chain of three stages), whatever else
  joined meanwhile, so liquid of every age mixes without approximation. A gas push moves the layer toward the film it leaves, share
  1 − (1 − h/R)² of V (× the wall's wetting factor), h/R = a·Ca^(2/3)/(1 + b·a·Ca^(2/3)),
  Ca = ηU/γ with η of the displaced liquid (:func:`simulators.physics.viscosity`) and
  U = Q/(πR²); the deposit is taken from the liquid the gas displaces before it leaves. Liquid
  advancing into a tube grows the layer to the film of its own flow over the wetted share
  (core liquid / V) of the tube, never thinning it.
* **Wash-out** — liquid passing over θ tube volumes moves the stages on (x = kθ, e = e^(−x)):
  first → e·first, second → e·(second + x·first), third → e·(third + x·second + x²/2·first),
  the rest released; for a single deposit that leaves S(θ) = e^(−kθ)(1 + kθ + (kθ)²/2).
  Released liquid joins the liquid in the last V
  of the segment (toward its exit), which gives the layer the same volume back. θ counts the
  liquid that entered that last V (a front still filling a longer segment's upstream part
  has not passed over the tube yet).
* **Pocket** — a mixed tank (the density cell's filling adapter) exchanging
  1 − exp(−v/V_x) of its content with v mL of liquid passing; gas leaves it alone.
* **Evaporation** — gas passing over a layer carries away ``saturation`` × x_i p_i/(RT) mol
  of each volatile component per m³ (Raoult); the lost volume becomes gas in the core, and
  :attr:`Walls.evaporated` keeps what left (so that liquid is still conserved).

A segment's core, layer and pocket together always hold its dead volume C.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from simulators import physics
from simulators.fluidics import Segment, take_liquid
from simulators.liquid import Liquid

GAS_CONSTANT = 8.314462618
"""J/(mol K), CODATA 2018."""

_EPS = 1e-13


@dataclass(frozen=True)
class ResidueParams:
    """The numbers of ``simulators/data/residues.toml`` (see that file for sources)."""

    surface_tension: float
    film_a: float
    film_b: float
    film_temperature: float
    wetting_cell: float
    wetting_tube: float
    k: float
    cell_pocket: float
    pocket_exchange: float
    evaporation_temperature: float
    saturation: float
    vapour_pressure: Mapping[str, float]


def load_params(path: str | Path | None = None) -> ResidueParams:
    """Read the residue parameters (default: the packaged ``data/residues.toml``)."""
    if path is None:
        text = resources.files("simulators").joinpath("data/residues.toml").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    d = tomllib.loads(text)
    ev = d["evaporation"]
    return ResidueParams(
        surface_tension=float(d["surface_tension"]), film_a=float(d["film"]["a"]),
        film_b=float(d["film"]["b"]), film_temperature=float(d["film"]["temperature"]),
        wetting_cell=float(d["wetting"]["cell"]), wetting_tube=float(d["wetting"]["tube"]),
        k=float(d["washout"]["k"]), cell_pocket=float(d["pockets"]["density_viscosity_cell"]),
        pocket_exchange=float(d["pockets"]["exchange"]),
        evaporation_temperature=float(ev["temperature"]), saturation=float(ev["saturation"]),
        vapour_pressure={k: float(v) for k, v in ev.get("vapour_pressure", {}).items()})


@dataclass
class _Window:
    parcels: list[Liquid]   # the last tube volume of the core, exit first
    spaced: list[Liquid]    # those at POINTS evenly spaced places
    entry: Liquid | None = None  # the core's entry-most parcel (where arriving liquid is)


@dataclass
class _Cohort:
    liquid: Liquid
    stage: int              # 0, 1, 2: the layer's stages in series (module docstring)


@dataclass
class _Pending:
    """Flow through a segment whose residue physics is not applied yet (see :data:`BATCH`)."""

    segment: Segment
    at_start: bool
    liquid: float = 0.0        # mL of liquid passed
    gas: float = 0.0           # mL of gas passed
    liquid_before: float = 0.0  # mL of liquid in the core when the pending gas began
    flow: float = 0.0          # mL/s of the latest push
    window_before: float = 0.0  # mL of liquid in the exit-end tube volume when it began
    liquid_out: float = 0.0    # mL of liquid that left the segment meanwhile


@dataclass(eq=False)
class _Wall:
    tube: float            # mL
    radius: float          # m
    wetting: float
    pocket_volume: float   # mL
    layer: list[_Cohort] = field(default_factory=list)
    pocket: Liquid = field(default_factory=Liquid)
    pending: _Pending | None = None

    def layer_liquid(self) -> Liquid:
        out = Liquid()
        for c in self.layer:
            out.add(c.liquid)
        return out


def _scaled(liq: Liquid, f: float) -> Liquid:
    return Liquid({k: n * f for k, n in liq.moles.items()}, liq.volume * f, liq.mass * f,
                  liq.gas * f)


class Walls:
    """Residue state of every segment of a world.

    Args:
        config: the bench (edges, instruments, chemicals).
        params: default :func:`load_params`.

    Attributes:
        evaporated: liquid that left the world as vapour (moles, volume, mass).
    """

    def __init__(self, config: Any, params: ResidueParams | None = None) -> None:
        self.params = params or load_params()
        self.chemicals = {c.inchikey: c for c in config.chemicals}
        self.model = physics.default_model()
        self.evaporated = Liquid()
        self._pending: dict[_Wall, None] = {}  # walls with pending flow, in order
        self._viscosities: dict[tuple, float] = {}
        cells = {}
        for inst in config.instruments:
            for e in config.tubing.edges:
                if {e.start, e.end} == {inst.inlet, inst.outlet}:
                    cells[e.label] = inst.kind
        self.walls: dict[str, _Wall] = {}
        for e in config.tubing.edges:
            if e.dead_volume <= 0:
                continue
            r_mm = e.inner_diameter / 2.0
            tube = math.pi * r_mm ** 2 * e.length / 1000.0 if e.length > 0 else e.dead_volume
            kind = cells.get(e.label)
            pocket = self.params.cell_pocket if kind == "density_viscosity" else 0.0
            self.walls[e.label] = _Wall(
                tube=max(tube, 1e-9), radius=r_mm * 1e-3,
                wetting=self.params.wetting_cell if kind else self.params.wetting_tube,
                pocket_volume=min(pocket, 0.5 * e.dead_volume))

    # ------------------------------------------------------------------ inspection
    def held(self, label: str) -> Liquid:
        """Copy of the layer plus the pocket of segment ``label`` (empty when none)."""
        w = self.walls.get(label)
        out = Liquid()
        if w is not None:
            self._apply_pending(w)
            out.add(w.layer_liquid())
            out.add(w.pocket)
        return out

    def holders(self) -> Iterable[Liquid]:
        """Every layer cohort and pocket (call :meth:`flush` first, before reading the cores:
        applying pending physics moves liquid between a core and its layer)."""
        for w in self.walls.values():
            for c in w.layer:
                yield c.liquid
            yield w.pocket

    def set_state(self, label: str, layer: Sequence[tuple[Liquid, int]], pocket: Liquid) -> None:
        """Replace a segment's layer (``(liquid, stage)`` pieces, stage 0–2) and pocket."""
        w = self.walls.get(label)
        if w is not None:
            self._settled(w)
            w.layer = [_Cohort(liq.copy(), min(max(int(stage), 0), STAGES - 1))
                       for liq, stage in layer if liq.volume > 0]
            self._bound(w)
            w.pocket = pocket.copy()

    # ------------------------------------------------------------------ one push
    def push(self, seg: Segment, incoming: Sequence[Liquid], at_start: bool,
             key: tuple[int, str], flow: float) -> list[Liquid]:
        """Push ``incoming`` through ``seg`` (plug flow) and apply the residue physics of that
        push; returns what leaves. ``flow``: mL/s through the segment.

        The physics of consecutive pushes of the same kind (liquid, gas, or both) in the same
        direction is applied together once they reach :data:`BATCH` of the tube volume (at
        least :data:`BATCH_MIN` mL), and before anything reads the residues (:meth:`flush`)."""
        w = self.walls.get(seg.label)
        if w is None:
            return seg.push(incoming, at_start, key)
        gas_in = liq_in = 0.0
        for p in incoming:
            gas_in += p.gas
            liq_in += p.volume
        if liq_in <= _EPS and gas_in <= _EPS:
            return seg.push(incoming, at_start, key)
        pend = w.pending
        if pend is not None and (pend.at_start != at_start or (gas_in > _EPS) != (pend.gas > _EPS)
                                 or (liq_in > _EPS) != (pend.liquid > _EPS)):
            self._apply(w, seg, pend)
            pend = None
        if pend is None:
            pend = w.pending = _Pending(seg, at_start)
            self._pending[w] = None
            if gas_in > _EPS:
                pend.liquid_before = sum(p.volume for p in seg.parcels)
            if liq_in > _EPS:
                pend.window_before = self._window_liquid(seg, w, at_start)
        threshold = max(BATCH * w.tube, BATCH_MIN)
        if liq_in <= _EPS and pend.liquid <= _EPS and pend.liquid_before > _EPS:
            # gas displacing liquid: the film is left by the liquid before it leaves, so the
            # batch that would empty the core (or is full) is applied before this push moves
            gas = pend.gas + gas_in
            liquid_now = sum(p.volume for p in seg.parcels)
            if liquid_now > _EPS and (gas_in >= liquid_now - _EPS or gas >= threshold):
                window = self._window(seg, w, at_start)
                left = max(0.0, liquid_now - gas_in)  # liquid the batch leaves in the core
                self._toward_film(w, window, flow, 1.0 - left / pend.liquid_before)
                out = seg.push(incoming, at_start, key)
                self._settled(w)
                self._evaporate(w, seg, at_start, gas)
                return out
        out = seg.push(incoming, at_start, key)
        pend.liquid += liq_in
        pend.gas += gas_in
        if liq_in > _EPS:
            pend.liquid_out += sum(p.volume for p in out)
        pend.flow = flow
        if pend.liquid + pend.gas >= threshold:
            self._apply(w, seg, pend)
        return out

    def flush(self, labels: Iterable[str] | None = None) -> None:
        """Apply the physics of the pending flow of segments ``labels`` (default: every
        segment) — before reading state, and when the flow through them stops."""
        if labels is None:
            walls = list(self._pending)
        else:
            walls = [w for w in (self.walls.get(k) for k in labels) if w in self._pending]
        for w in walls:
            self._apply_pending(w)

    def _settled(self, w: _Wall) -> None:
        """``w`` has no pending flow any more."""
        w.pending = None
        self._pending.pop(w, None)

    def _apply_pending(self, w: _Wall) -> None:
        if w.pending is not None:
            self._apply(w, w.pending.segment, w.pending)

    def _apply(self, w: _Wall, seg: Segment, pend: _Pending) -> None:
        self._settled(w)
        window = self._window(seg, w, pend.at_start)
        if pend.liquid > _EPS:
            # the liquid that passed over the wetted tube (entered the exit-end tube volume):
            # a front still filling the segment's upstream part washes nothing yet
            passed = max(0.0, self._window_liquid(seg, w, pend.at_start) - pend.window_before
                         + pend.liquid_out)
            self._wash(w, window, passed / w.tube)
            self._pocket(w, window, passed)
            self._wet(w, seg, window, pend.flow)
        if pend.gas > _EPS:
            if pend.liquid_before > _EPS:
                left = sum(p.volume for p in seg.parcels)
                self._toward_film(w, window, pend.flow,
                                  max(0.0, 1.0 - left / pend.liquid_before))
            self._evaporate(w, seg, pend.at_start, pend.gas)

    # ------------------------------------------------------------------ physics
    def _window(self, seg: Segment, w: _Wall, at_start: bool) -> _Window:
        """The core parcels in the last ``w.tube`` mL toward the exit end of this push, and
        those at :data:`POINTS` evenly spaced places of it."""
        parcels = reversed(seg.parcels) if at_start else iter(seg.parcels)
        out, spaced, seen, j = [], [], 0.0, 0
        step = w.tube / POINTS
        for p in parcels:
            if seen >= w.tube:
                break
            out.append(p)
            seen += p.volume + p.gas
            while j < POINTS and (j + 0.5) * step <= seen:
                if not spaced or spaced[-1] is not p:
                    spaced.append(p)
                j += 1
        if j < POINTS and out and (not spaced or spaced[-1] is not out[-1]):
            spaced.append(out[-1])
        entry = (seg.parcels[0] if at_start else seg.parcels[-1]) if seg.parcels else None
        return _Window(out, spaced, entry)

    @staticmethod
    def _window_liquid(seg: Segment, w: _Wall, at_start: bool) -> float:
        """mL of liquid in the last ``w.tube`` mL of the core toward the exit end."""
        parcels = reversed(seg.parcels) if at_start else iter(seg.parcels)
        room, liquid = w.tube, 0.0
        for p in parcels:
            size = p.volume + p.gas
            if size >= room:
                return liquid + (p.volume * room / size if size > 0 else 0.0)
            liquid += p.volume
            room -= size
        return liquid

    def _exchange(self, window: _Window, take: float, give: Liquid | None) -> Liquid:
        """Take ``take`` mL of liquid from the window and give it ``give``: at
        :data:`POINTS` evenly spaced places of the window (their parcels share it by their
        liquid), or over every parcel when those places hold too little liquid. Returns
        what was taken."""
        chosen = window.spaced
        total = sum(p.volume for p in chosen)
        if total < 2.0 * take:
            chosen = window.parcels
            total = sum(p.volume for p in chosen)
        taken = Liquid()
        if total <= _EPS:  # no liquid to spread over: it joins the entry end (the liquid
            if give is not None and give.volume > 0:  # arriving there), never the exit
                target = window.entry if window.entry is not None else (
                    window.parcels[0] if window.parcels else None)
                if target is not None:
                    target.add(give)
            return taken
        take = min(take, total)
        for p in chosen:
            if p.volume <= 0:
                continue
            share = p.volume / total
            if take > 0:
                taken.add(take_liquid(p, take * share))
            if give is not None:
                p.add(_scaled(give, share))
        return taken

    def _wash(self, w: _Wall, window: _Window, dtheta: float) -> None:
        if not w.layer or dtheta <= 0 or sum(p.volume for p in window.parcels) <= _EPS:
            return  # no liquid passes over the wetted tube yet (the front is upstream)
        self._bound(w)
        stages: list[Liquid | None] = [None] * STAGES
        for c in w.layer:
            stages[c.stage] = c.liquid
        x = self.params.k * dtheta
        e = math.exp(-x)
        moved = (x * e, x * x / 2.0 * e)  # share of a stage's content moving 1 and 2 on
        new = [Liquid() for _ in range(STAGES)]
        released = Liquid()
        for i, liq in enumerate(stages):
            if liq is None:
                continue
            stay = 1.0
            for j, share in ((i, e), (i + 1, moved[0]), (i + 2, moved[1])):
                if j < STAGES:
                    new[j].add(_scaled(liq, share))
                    stay -= share
            released.add(_scaled(liq, max(stay, 0.0)))
        w.layer = [_Cohort(liq, i) for i, liq in enumerate(new) if liq.volume > _EPS]
        taken = self._exchange(window, released.volume, released)
        if taken.volume > _EPS:
            w.layer.append(_Cohort(taken, 0))
        self._bound(w)

    def _film_share(self, liquid: Liquid, flow: float, radius: float) -> float:
        if flow <= 0 or liquid.volume <= 0:
            return 0.0
        total = sum(liquid.moles.values())
        key = tuple(sorted((k, round(n / total, 6)) for k, n in liquid.moles.items()
                           if n > 0)) if total > 0 else ()
        eta = self._viscosities.get(key)  # η of a composition (rounded to 1e-6): a cache
        if eta is None:
            try:
                eta = physics.viscosity(liquid.moles, self.params.film_temperature,
                                        self.chemicals, self.model)
            except ValueError:
                eta = 1.0
            if len(self._viscosities) > 65536:
                self._viscosities.clear()
            self._viscosities[key] = eta
        u = flow * 1e-6 / (math.pi * radius ** 2)
        c = (eta * 1e-3 * u / self.params.surface_tension) ** (2.0 / 3.0)
        h = self.params.film_a * c / (1.0 + self.params.film_b * self.params.film_a * c)
        return 1.0 - (1.0 - h) ** 2

    def _target(self, w: _Wall, window: _Window, flow: float) -> float | None:
        """mL of film a push at ``flow`` leaves from the window's liquid (None: no liquid)."""
        core = Liquid()
        for p in window.spaced:
            core.add(Liquid(p.moles, p.volume, p.mass))
        if core.volume <= _EPS:  # the spaced places hold gas: all the window's liquid
            for p in window.parcels:
                core.add(Liquid(p.moles, p.volume, p.mass))
        if core.volume <= _EPS:
            return None
        return w.wetting * self._film_share(core, flow, w.radius) * w.tube

    def _wet(self, w: _Wall, seg: Segment, window: _Window, flow: float) -> None:
        """Liquid advancing into a tube: the layer grows to the film of that flow over the
        wetted share (core liquid / tube volume) of the tube; it is never thinned here."""
        target = self._target(w, window, flow)
        if target is None:
            return
        wetted = min(1.0, sum(p.volume for p in seg.parcels) / w.tube)
        have = sum(c.liquid.volume for c in w.layer)
        if target * wetted - have > _EPS:
            taken = self._exchange(window, target * wetted - have, None)
            if taken.volume > _EPS:
                w.layer.append(_Cohort(taken, 0))
            self._bound(w)

    def _toward_film(self, w: _Wall, window: _Window, flow: float, share: float) -> None:
        target = self._target(w, window, flow)
        if target is None:  # nothing left to displace here: the film stays as it is
            return
        have = sum(c.liquid.volume for c in w.layer)
        delta = (target - have) * share
        if delta > _EPS:
            taken = self._exchange(window, delta, None)
            if taken.volume > _EPS:
                w.layer.append(_Cohort(taken, 0))
        elif delta < -_EPS and have > _EPS:
            f = -delta / have
            released = Liquid()
            for c in w.layer:
                released.add(c.liquid.take(c.liquid.volume * f))
            self._exchange(window, 0.0, released)
        self._bound(w)

    def _pocket(self, w: _Wall, window: _Window, liq: float) -> None:
        if w.pocket_volume <= 0 or sum(p.volume for p in window.parcels) <= _EPS:
            return
        if w.pocket.volume < w.pocket_volume - _EPS:
            w.pocket.add(self._exchange(window, w.pocket_volume - w.pocket.volume, None))
        e = 1.0 - math.exp(-liq / self.params.pocket_exchange)
        released = w.pocket.take(w.pocket.volume * e)
        w.pocket.add(self._exchange(window, released.volume, released))

    def _evaporate(self, w: _Wall, seg: Segment, at_start: bool, gas: float) -> None:
        film = w.layer_liquid()
        total = sum(film.moles.values())
        if total <= 0 or not self.params.vapour_pressure:
            return
        rt = GAS_CONSTANT * self.params.evaporation_temperature
        lost_volume = 0.0
        for key, p_sat in self.params.vapour_pressure.items():
            have = film.moles.get(key, 0.0)
            if have <= 0:
                continue
            n = min(have, self.params.saturation * have / total * p_sat / rt * gas * 1e-6)
            chem = self.chemicals[key]
            ratio = n / have
            for c in w.layer:
                dn = c.liquid.moles.get(key, 0.0) * ratio
                if dn <= 0:
                    continue
                # what leaves: at most what the cohort holds (its volume is by ideal mixing)
                dv = min(dn * chem.molar_mass / (chem.density or 1.0), c.liquid.volume)
                dm = min(dn * chem.molar_mass, c.liquid.mass)
                c.liquid.moles[key] -= dn
                c.liquid.volume -= dv
                c.liquid.mass -= dm
                self.evaporated.add(Liquid({key: dn}, dv, dm))
                lost_volume += dv
        w.layer = [c for c in w.layer if c.liquid.volume > _EPS]
        if lost_volume > 0 and seg.parcels:  # the segment keeps its volume: gas takes the room
            (seg.parcels[0] if at_start else seg.parcels[-1]).gas += lost_volume

    def _bound(self, w: _Wall) -> None:
        """One piece per stage (the stages are well mixed: merging is exact); empty ones
        dropped."""
        stages: list[Liquid | None] = [None] * STAGES
        for c in w.layer:
            if c.liquid.volume <= _EPS:
                continue
            if stages[c.stage] is None:
                stages[c.stage] = c.liquid
            else:
                stages[c.stage].add(c.liquid)
        w.layer = [_Cohort(liq, i) for i, liq in enumerate(stages) if liq is not None]


BATCH = 0.2
"""Share of a segment's tube volume of consecutive flow of one kind whose residue physics is
applied in one go (a bounded cost per clock step; the wash-out law is applied exactly over the
batch's tube volumes, only where released residue joins the core is coarsened)."""

BATCH_MIN = 0.1
"""mL: smallest batch, so that short fittings do not cost a full update every clock step."""

STAGES = 3
"""Stages of a wall layer (the three-stage wash-out law)."""

POINTS = 4
"""Places of a segment's last tube volume where released residue joins the liquid and the
layer draws its replacement (spread as along the tube, at a bounded cost per step)."""


__all__ = ["ResidueParams", "Walls", "load_params"]
