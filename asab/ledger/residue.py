"""Residues in the lines: the wall layer (film), its wash-out, unswept pockets — asab's own
model, used by the ledger to predict what the cell holds when it measures.

Physics (the same as the simulated world's, implemented separately there; the two are
tested against each other, never shared):

* **Film left by a gas push.** Gas displacing liquid from a tube of radius R leaves a wall
  film of thickness h with h/R = 1.34 Ca^(2/3) / (1 + 2.5·1.34 Ca^(2/3)), Ca = ηU/γ
  (Aussillous & Quéré 2000, Phys. Fluids 12:2367, fitting Taylor 1961, JFM 10:161, and
  Bretherton 1961, JFM 10:166). The film's share of the tube volume is 1 − (1 − h/R)²,
  times a wetting factor (glass 1; PTFE/PFA and valve channels partly wet,
  ``[carryover] tube_wetting``). U = Q/(πR²) from the push's flow; η of the displaced
  liquid (below); γ ``[carryover] surface_tension``.
* **The wall layer exchanges with the liquid that passes.** While liquid flows, the layer
  (film, or the slow liquid near the wall) is replaced by the passing liquid; of what was in
  it, the share left after θ tube volumes is S(θ) = e^(−kθ)(1 + kθ + (kθ)²/2) (k =
  ``wash_rate`` = 1.75). This three-stage form is fitted here to the wash-out the issue
  quotes for Poiseuille flow with radial diffusion in the bench's tubes (residence ≈ 20 s ≪
  R²/D ≈ 1,400–4,800 s): about 0.75 after one volume, 0.3–0.5 after two, 0.07–0.24 after
  three, 0.01–0.1 after four, < 1e-2 after six (S = 0.74, 0.32, 0.10, 0.030, 0.0018).
  The layer is kept as three well-mixed stages in series: what joins it enters the first,
  passing liquid moves each stage's content on at rate k per tube volume (over θ, x = kθ,
  e = e^(−x): first → e·first, second → e·(second + x·first), third → e·(third + x·second +
  x²/2·first), the rest released). A single deposit then survives exactly S(θ) (an Erlang
  chain of three stages), and deposits of any age mix without approximation. Released
  material joins the passing liquid in the segment, which puts the same volume into the
  layer's first stage.
  θ counts the liquid that passes over the wetted tube — what enters the segment's last
  tube volume (its exit end) — so a front still filling a dry segment washes nothing yet.
* **Unswept pockets** (fittings, the cell's filling adapter) are mixed tanks of volume V_p
  that exchange e = 1 − exp(−V/V_x) of their content with V mL of liquid passing
  (V_x = ``pocket_exchange``); gas does not empty them.
* Volumes: a segment of dead volume C holds its layer, its pocket and a plug-flow core of
  C − layer − pocket (:mod:`asab.ledger.liquid`), so what a segment holds is always C.
* **Not modelled here** (the simulated world has it): evaporation of volatile solvents from
  films during gas flow. Its effect is bounded in :func:`Prediction` uncertainty.

Viscosity for Ca: per origin, ln η of the salt-free solvent mixed by mole fraction
(Grunberg–Nissan with G = 0), each pure solvent from chemicals.csv moved to 298.15 K with
E_a = 12 kJ/mol (Arrhenius), times exp(b·c) for each salt (a chemical without a liquid
viscosity) at c mol/L (electrolyte_models.md); origins in a mixture mix by volume in ln η.

Units: mL, mL/s, m, Pa·s inside the film formula, mPa·s for viscosities.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from asab.config import BenchConfig
from asab.ledger.liquid import (
    GAS,
    SOLVENT,
    Content,
    Parcel,
    add,
    normalise,
    take_front,
    through,
    volume_of,
)

FILM_A = 1.34
"""Taylor's/Aussillous–Quéré prefactor of Ca^(2/3)."""

FILM_B = 2.5
"""Aussillous–Quéré's denominator factor (h/R → 1/2.5·… at large Ca)."""

REFERENCE_TEMPERATURE = 298.15
"""K at which viscosities are estimated (the densimeter's method temperature)."""

ACTIVATION_ENERGY = 12_000.0
"""J/mol, Arrhenius activation energy of carbonate viscosities (electrolyte_models.md)."""

GAS_CONSTANT = 8.314462618
"""J/(mol K), CODATA 2018."""

STAGES = 3
"""Stages of a wall layer (the three-stage wash-out law, module docstring)."""

FINE_TUBE_VOLUMES = 6.0
"""Tube volumes of a step's stream cut into pieces (S(6) ≈ 2e-3: the layer's release is
resolved); the rest is one piece whose small release leaves with it."""

SLICE_THETA = 0.6
"""Tube volumes per piece of a stream in a line."""

CELL_SLICE_THETA = 0.2
"""Tube volumes per piece in an instrument cell, whose content is what asab predicts: where
released residue joins the core is resolved to a piece, and on the benchmark's alternating
sequences (benchmarks/bench_carryover.py) the predicted cell composition is within 1.3e-4
mole fraction of the simulated world's with 0.2 in the cell (the same with 0.2 everywhere),
1.8e-4 with 0.3, 2.0e-4 with 0.4 and 3.5e-4 with 0.6 (the world's batches: 0.2)."""


_EPS = 1e-12


@dataclass(frozen=True)
class Cohort:
    """The content of one stage of a wall layer (module docstring).

    Attributes:
        volume: mL.
        shares: origin → volume fraction (liquid only).
        stage: 0, 1 or 2 (liquid joins the layer in stage 0).
    """

    volume: float
    shares: tuple[tuple[str, float], ...]
    stage: int

    def content(self) -> Content:
        return {k: f * self.volume for k, f in self.shares}


@dataclass(frozen=True)
class Wall:
    """Residue parameters of one tubing segment.

    Attributes:
        capacity: dead volume, mL (what the segment holds in all).
        tube_volume: π r² L from the edge's length and inner diameter, mL (the wetted tube:
            film volume and wash-out θ refer to it); the dead volume when the length is 0.
        radius: inner radius, m.
        wetting: film factor (0–1).
        pocket: unswept pocket, mL.
        piece: tube volumes per piece of a stream (finer in an instrument cell).
    """

    capacity: float
    tube_volume: float
    radius: float
    wetting: float
    pocket: float
    piece: float = SLICE_THETA


def survival(theta: float, k: float) -> float:
    """Share of a layer left after ``theta`` tube volumes of liquid (module docstring)."""
    x = k * max(theta, 0.0)
    return math.exp(-x) * (1.0 + x + 0.5 * x * x)


def film_share(eta: float, flow: float, radius: float, gamma: float) -> float:
    """Share of the tube volume a gas push leaves as film (fully wetting wall).

    Args:
        eta: viscosity of the displaced liquid, mPa·s.
        flow: mL/s.
        radius: m.
        gamma: surface tension, N/m.
    """
    if flow <= 0 or radius <= 0 or eta <= 0:
        return 0.0
    speed = flow * 1e-6 / (math.pi * radius * radius)
    ca23 = (eta * 1e-3 * speed / gamma) ** (2.0 / 3.0)
    h = FILM_A * ca23 / (1.0 + FILM_B * FILM_A * ca23)
    return 1.0 - (1.0 - h) ** 2


class ResidueModel:
    """The residue physics of one bench (see the module docstring).

    Args:
        config: the bench; ``config.carryover`` holds the parameters.
    """

    def __init__(self, config: BenchConfig) -> None:
        co = config.carryover
        self.k = co.wash_rate
        self.gamma = co.surface_tension
        self.exchange = co.pocket_exchange
        cells = {}
        for inst in config.instruments:
            for e in config.tubing.edges:
                if {e.start, e.end} == {inst.inlet, inst.outlet}:
                    cells[e.label] = inst
        self.walls: dict[str, Wall] = {}
        for e in config.tubing.edges:
            if e.dead_volume <= 0:
                continue
            r = e.inner_diameter / 2.0
            tube = math.pi * r * r * e.length / 1000.0 if e.length > 0 else e.dead_volume
            inst = cells.get(e.label)
            pocket = co.pockets.get(e.label, co.cell_pocket if (
                inst is not None and inst.kind == "density_viscosity") else 0.0)
            self.walls[e.label] = Wall(
                capacity=e.dead_volume, tube_volume=max(tube, 1e-9), radius=r * 1e-3,
                wetting=co.cell_wetting if inst is not None else co.tube_wetting,
                pocket=min(pocket, 0.5 * e.dead_volume),
                piece=CELL_SLICE_THETA if inst is not None else SLICE_THETA)
        self.viscosity = origin_viscosities(config)

    # ------------------------------------------------------------------ properties
    def eta(self, content: Mapping[str, float]) -> float:
        """mPa·s of a liquid content (origin → mL), ln η mixed by volume."""
        liq = {k: v for k, v in content.items() if k != GAS and v > 0}
        total = math.fsum(liq.values())
        if total <= _EPS:
            return self.viscosity.get(SOLVENT, 1.0)
        top = max(self.viscosity.values(), default=1.0)
        return math.exp(math.fsum(v / total * math.log(self.viscosity.get(k, top))
                                  for k, v in liq.items()))

    # ------------------------------------------------------------------ one segment
    def through(self, label: str, core: Sequence[Parcel], layer: Sequence[Cohort],
                pocket: Mapping[str, float], incoming: Sequence[Parcel], flow: float
                ) -> tuple[list[Parcel], list[Cohort], Content, list[Parcel]]:
        """Push ``incoming`` (flow order) into segment ``label`` (core in flow order, entry
        end first) at ``flow`` mL/s.

        Returns:
            ``(core, layer, pocket, outflow)`` afterwards; ``outflow`` in flow order.
        """
        wall = self.walls.get(label)
        if wall is None:
            return list(core), list(layer), dict(pocket), list(incoming)
        total_in = math.fsum(p.volume for p in incoming)
        core, layer, pocket = list(core), list(layer), dict(pocket)
        out: list[Parcel] = []
        fast = self._same_liquid(wall, core, layer, pocket, incoming, total_in, flow)
        if fast is not None:
            return fast
        gas_only = all(dict(p.shares).get(GAS, 0.0) >= 1.0 - 1e-12 for p in incoming)
        if gas_only and _liquid_volume(core) <= _EPS:  # gas through a dry core: plug flow only
            core, leaving = through(core, math.fsum(p.volume for p in core), incoming)
            return _coarse(core), layer, pocket, _coarse(leaving)
        for group in _groups(incoming, total_in, wall.piece * wall.tube_volume,
                             _slices(wall.piece)):
            liquid_core = _liquid_volume(core)
            gas = math.fsum(p.volume * dict(p.shares).get(GAS, 0.0) for p in group)
            liq = math.fsum(p.volume for p in group) - gas
            if liq <= _EPS and gas > _EPS and liquid_core > _EPS:
                # gas displacing liquid: the film is left by the liquid before it leaves
                core, layer = self._set_layer(wall, core, layer, flow, liquid_core, gas=gas)
                gas = 0.0  # done
            capacity = math.fsum(p.volume for p in core)
            before = _window_liquid(core, wall.tube_volume) if liq > _EPS else 0.0
            core, leaving = through(core, capacity, group)
            # liquid that passed over the wetted tube (entered its window): a front still
            # filling the segment's upstream part, or only reaching the window, washes less
            passed = max(0.0, _window_liquid(core, wall.tube_volume) - before
                         + _liquid_volume(leaving)) if liq > _EPS else 0.0
            if liq > capacity + _EPS and _liquid_volume(leaving) > math.fsum(
                    c.volume for c in layer) + _EPS:
                # a long piece: what the layer releases meanwhile leaves with it (the stream
                # holds enough liquid to give the layer back what it released)
                leaving, layer = self._wash(wall, leaving, layer, passed / wall.tube_volume,
                                            math.fsum(p.volume for p in leaving))
                liq_done = True
            else:
                liq_done = False
            out.extend(leaving)
            if liq > _EPS:
                if not liq_done:
                    core, layer = self._wash(wall, core, layer, passed / wall.tube_volume)
                core, pocket = self._pocket(wall, core, pocket, passed)
                core, layer = self._wet(wall, core, layer, flow)
            if gas > _EPS and liquid_core > _EPS:
                core, layer = self._set_layer(wall, core, layer, flow, liquid_core, gas=gas)
        return _coarse(core), _merged(layer), pocket, _coarse(out)

    def _film(self, wall: Wall, content: Mapping[str, float], flow: float) -> float:
        """mL of film a push of ``content`` at ``flow`` mL/s leaves on the whole wetted tube
        (at most half the segment's dead volume)."""
        eta = self.eta(content)
        target = wall.wetting * film_share(eta, flow, wall.radius, self.gamma) * wall.tube_volume
        return min(target, 0.5 * wall.capacity)

    def _same_liquid(self, wall: Wall, core: list[Parcel], layer: list[Cohort],
                     pocket: Content, incoming: Sequence[Parcel], total_in: float, flow: float
                     ) -> tuple[list[Parcel], list[Cohort], Content, list[Parcel]] | None:
        """The push when the core, the layer, the pocket and the stream all hold one and the
        same liquid and the layer is at least the film this flow leaves: nothing changes but
        the layer's age (its wash-out, piece by piece as in the general case, exchanges like
        for like). None when that does not hold."""
        if not incoming or not core or not layer:
            return None
        shares = incoming[0].shares
        if any(k == GAS for k, _ in shares):
            return None
        if (any(p.shares != shares for p in incoming) or any(p.shares != shares for p in core)
                or any(c.shares != shares for c in layer)):
            return None
        if wall.pocket > 0:
            have = volume_of(pocket)
            if have < wall.pocket - _EPS or Parcel.of(pocket).shares != shares:
                return None
        liquid_core = math.fsum(p.volume for p in core)
        target = self._film(wall, {k: f for k, f in shares}, flow) * min(
            1.0, liquid_core / wall.tube_volume)
        volume = math.fsum(c.volume for c in layer)
        if target - volume > _EPS:
            return None
        stages = [0.0] * STAGES
        for c in layer:
            stages[c.stage] += c.volume
        stages, released = _advance(stages, self.k * total_in / wall.tube_volume)
        stages[0] += released  # the release is replaced by the same liquid
        return (_coarse(core), [Cohort(v, shares, i) for i, v in enumerate(stages) if v > _EPS],
                pocket, [Parcel(total_in, shares)])

    def _wash(self, wall: Wall, core: list[Parcel], layer: list[Cohort], dtheta: float,
              window: float | None = None) -> tuple[list[Parcel], list[Cohort]]:
        if not layer or dtheta <= 0 or _window_liquid(
                core, wall.tube_volume if window is None else window) <= _EPS:
            return core, layer  # no liquid passes over the wetted tube yet
        stages: list[Content] = [{} for _ in range(STAGES)]
        for c in layer:
            stages[c.stage] = add(stages[c.stage], c.content())
        stages, released = _advance(stages, self.k * dtheta)
        kept = [_cohort(c, i) for i, c in enumerate(stages) if volume_of(c) > _EPS]
        released = {k: v for k, v in released.items() if v > _EPS}
        volume = volume_of(released)
        core, taken = _swap(core, volume, released,
                            wall.tube_volume if window is None else window)
        if volume_of(taken) > _EPS:
            kept.append(_cohort(taken, 0))
        return core, kept

    def _wet(self, wall: Wall, core: list[Parcel], layer: list[Cohort], flow: float
             ) -> tuple[list[Parcel], list[Cohort]]:
        """Liquid advancing into a tube: the layer grows to the film a push at ``flow``
        leaves over the wetted share (core liquid / tube volume) of the tube, never thinner."""
        liquid_core = _liquid_volume(core)
        if liquid_core <= _EPS:
            return core, layer
        target = self._film(wall, _liquid_content(core), flow) * min(
            1.0, liquid_core / wall.tube_volume)
        have = math.fsum(c.volume for c in layer)
        if target - have > _EPS:
            core, taken = _swap(core, target - have, {}, wall.tube_volume)
            if volume_of(taken) > _EPS:
                layer = layer + [_cohort(taken, 0)]
        return core, layer

    def _set_layer(self, wall: Wall, core: list[Parcel], layer: list[Cohort], flow: float,
                   liquid_core: float, gas: float | None = None
                   ) -> tuple[list[Parcel], list[Cohort]]:
        """Move the layer toward the film a push at ``flow`` leaves: by the swept share
        ``gas / liquid_core`` of the way for a gas piece, at once for a first wetting."""
        target = self._film(wall, _liquid_content(core), flow)
        have = math.fsum(c.volume for c in layer)
        share = 1.0 if gas is None else min(1.0, gas / liquid_core)
        delta = (target - have) * share
        if delta > _EPS:
            core, taken = _swap(core, delta, {}, wall.tube_volume)
            if volume_of(taken) > _EPS:
                layer = layer + [_cohort(taken, 0)]
        elif delta < -_EPS and have > _EPS:
            f = -delta / have
            released: Content = {}
            for c in layer:
                released = add(released, c.content(), f)
            layer = [Cohort(c.volume * (1 - f), c.shares, c.stage) for c in layer]
            core, _ = _swap(core, 0.0, released, wall.tube_volume)
        return core, layer

    def _pocket(self, wall: Wall, core: list[Parcel], pocket: Content, liq: float
                ) -> tuple[list[Parcel], Content]:
        if wall.pocket <= 0 or _window_liquid(core, wall.tube_volume) <= _EPS:
            return core, pocket
        have = volume_of(pocket)
        if have < wall.pocket - _EPS:
            core, taken = _swap(core, wall.pocket - have, {}, wall.tube_volume)
            pocket = add(pocket, taken)
        e = 1.0 - math.exp(-liq / self.exchange)
        released = {k: v * e for k, v in pocket.items()}
        core, taken = _swap(core, volume_of(released), released, wall.tube_volume)
        pocket = add(add(pocket, released, -1.0), taken)
        return core, pocket


# ---------------------------------------------------------------------- helpers
def _slices(theta: float) -> int:
    """Pieces at most for pieces of ``theta`` tube volumes: FINE_TUBE_VOLUMES of them, then
    the rest."""
    return math.ceil(FINE_TUBE_VOLUMES / theta - 1e-9) + 1


def _piece_volumes(total_volume: float, piece: float, slices: int) -> list[float]:
    """The volumes :func:`_groups` cuts ``total_volume`` mL into."""
    if piece <= _EPS or total_volume <= _EPS:
        return [total_volume]
    fine = min(math.ceil(total_volume / piece), slices - 1)
    size = min(piece, total_volume / fine)
    rest = max(0.0, total_volume - fine * size)
    return [size] * fine + ([rest] if rest > _EPS else [])


def _groups(parcels: Iterable[Parcel], total_volume: float, piece: float, slices: int
            ) -> list[list[Parcel]]:
    """``parcels`` (flow order, ``total_volume`` mL) cut into consecutive groups: the first
    ones of ``piece`` mL (at most ``slices`` − 1 of them: the layer releases nearly all it
    holds within them), then one group of the rest."""
    if piece <= _EPS or total_volume <= _EPS:
        return [[p for p in parcels if p.volume > _EPS]]
    sizes = _piece_volumes(total_volume, piece, slices)
    out: list[list[Parcel]] = [[]]
    k, room = 0, sizes[0]
    for p in parcels:
        left = p.volume
        while left > _EPS:
            take = min(left, room)
            out[-1].append(p.scaled(take))
            left -= take
            room -= take
            if room <= _EPS and k + 1 < len(sizes):
                k += 1
                room = sizes[k]
                out.append([])
    return [g for g in out if g]


MAX_PARCELS = 24
"""Parcels a segment's core or a stream keeps at most (residue exchange makes neighbours
differ slightly; the closest, smallest neighbours of the same phase are merged)."""


def _phase(p: Parcel) -> int:
    g = dict(p.shares).get(GAS, 0.0)
    return 0 if g <= 1e-9 else 2 if g >= 1 - 1e-9 else 1


def _coarse(parcels: Sequence[Parcel], limit: int = MAX_PARCELS) -> list[Parcel]:
    """``parcels`` normalised, then neighbours merged until at most ``limit`` remain: those
    of the same phase (liquid, gas, both) with the smallest joint volume first."""
    out = normalise(parcels)
    if len(out) <= limit:
        return out
    phases = [_phase(p) for p in out]
    while len(out) > limit:
        pairs = [(out[i].volume + out[i + 1].volume, i) for i in range(len(out) - 1)
                 if phases[i] == phases[i + 1]]
        if not pairs:
            break
        _, i = min(pairs)
        merged = Parcel.of(add(out[i].content(), out[i + 1].content()))
        out[i:i + 2] = [merged] if merged is not None else []
        phases[i:i + 2] = [phases[i]] if merged is not None else []
    return out


def _liquid_volume(parcels: Iterable[Parcel]) -> float:
    return math.fsum(p.volume * (1.0 - dict(p.shares).get(GAS, 0.0)) for p in parcels)


def _window_liquid(core: Sequence[Parcel], window: float) -> float:
    """mL of liquid in the last ``window`` mL of ``core`` (its exit end: the wetted tube)."""
    volume = math.fsum(p.volume for p in core)
    if volume > window + _EPS:
        core = take_front(core, volume - window)[1]
    return _liquid_volume(core)


def _liquid_content(parcels: Iterable[Parcel]) -> Content:
    out: Content = {}
    for p in parcels:
        out = add(out, {k: f * p.volume for k, f in p.shares if k != GAS})
    return out


def _swap(core: list[Parcel], take: float, give: Mapping[str, float], window: float
          ) -> tuple[list[Parcel], Content]:
    """Take ``take`` mL of liquid from the core and give it ``give`` (origin → mL), both
    spread in proportion to their liquid over the parcels of the last ``window`` mL of the
    core (the wetted tube, at the exit end of a segment whose dead volume is larger).

    Returns:
        ``(core, taken)``; less is taken when the core holds less liquid.
    """
    volume = math.fsum(p.volume for p in core)
    if volume > window + _EPS:
        head, tail = take_front(core, volume - window)
        tail, taken = _swap(tail, take, give, math.inf)
        return head + tail, taken
    liquid_total = _liquid_volume(core)
    if liquid_total <= _EPS:
        if volume_of(give) > _EPS:  # no liquid to spread over: it joins the entry end
            p = Parcel.of(give)
            return ([p] if p else []) + list(core), {}
        return list(core), {}
    take = min(take, liquid_total)
    taken: Content = {}
    out = []
    for p in core:
        shares = dict(p.shares)
        liq = p.volume * (1.0 - shares.get(GAS, 0.0))
        if liq <= _EPS:
            out.append(p)
            continue
        w = liq / liquid_total
        keep = 1.0 - take / liquid_total  # the parcel's liquid loses take·w of its liq mL
        content: Content = {}
        for k, f in p.shares:
            v = f * p.volume
            if k != GAS:
                taken[k] = taken.get(k, 0.0) + v * (1.0 - keep)
                v *= keep
            content[k] = v
        for k, v in give.items():
            content[k] = content.get(k, 0.0) + v * w
        new = Parcel.of(content)
        if new is not None:
            out.append(new)
    return out, {k: v for k, v in taken.items() if abs(v) > _EPS}


def _cohort(content: Mapping[str, float], stage: int) -> Cohort:
    p = Parcel.of({k: v for k, v in content.items() if k != GAS})
    assert p is not None
    return Cohort(p.volume, p.shares, stage)


def _advance(stages, x: float):
    """The layer's stages after liquid passed over ``x`` = kθ (module docstring).

    Args:
        stages: per stage, mL (floats) or contents (origin → mL).
    Returns:
        ``(stages, released)`` of the same kind.
    """
    e = math.exp(-x)
    shares = (e, x * e, 0.5 * x * x * e)  # of a stage's content: stays, moves 1 on, 2 on
    if not stages or isinstance(stages[0], (int, float)):
        new = [0.0] * STAGES
        released = 0.0
        for i, v in enumerate(stages):
            stay = 0.0
            for j in range(STAGES - i):
                new[i + j] += v * shares[j]
                stay += shares[j]
            released += v * max(0.0, 1.0 - stay)
        return new, released
    out: list[Content] = [{} for _ in range(STAGES)]
    gone: Content = {}
    for i, content in enumerate(stages):
        stay = 0.0
        for j in range(STAGES - i):
            out[i + j] = add(out[i + j], content, shares[j])
            stay += shares[j]
        gone = add(gone, content, max(0.0, 1.0 - stay))
    return out, gone


def _merged(layer: Sequence[Cohort]) -> list[Cohort]:
    """One cohort per stage (a stage is well mixed: merging is exact), empty ones dropped."""
    stages: list[Content] = [{} for _ in range(STAGES)]
    for c in layer:
        if c.volume > _EPS:
            stages[c.stage] = add(stages[c.stage], c.content())
    return [_cohort(c, i) for i, c in enumerate(stages) if volume_of(c) > _EPS]


def layer_content(layer: Iterable[Cohort]) -> Content:
    """origin → mL of a layer."""
    out: Content = {}
    for c in layer:
        out = add(out, c.content())
    return out


# ---------------------------------------------------------------------- viscosity
def _pure_viscosity(chem) -> float | None:
    if chem.viscosity is None:
        return None
    t0 = chem.viscosity_temperature or REFERENCE_TEMPERATURE
    return chem.viscosity * math.exp(ACTIVATION_ENERGY / GAS_CONSTANT
                                     * (1.0 / REFERENCE_TEMPERATURE - 1.0 / t0))


def origin_viscosities(config: BenchConfig) -> dict[str, float]:
    """origin → estimated viscosity in mPa·s at 298.15 K (module docstring): each stock from
    its components, the cleaning solvent from its chemical."""
    out: dict[str, float] = {}
    b = config.carryover.salt_viscosity_b
    for stock in config.stocks:
        moles = {}
        for key, comp in stock.components.items():
            if comp.mass > 0:
                moles[key] = comp.mass / config.chemical(key).molar_mass
        solvents = {k: n for k, n in moles.items() if _pure_viscosity(config.chemical(k))}
        salts = {k: n for k, n in moles.items() if k not in solvents}
        total = sum(solvents.values())
        if total <= 0:
            continue
        ln_eta = sum(n / total * math.log(_pure_viscosity(config.chemical(k)))
                     for k, n in solvents.items())
        litres = stock.volume / 1000.0
        ln_eta += sum(b * n / litres for n in salts.values())
        out[stock.name] = math.exp(ln_eta)
    solvent = _pure_viscosity(config.chemical(config.settings.solvent_chemical))
    out[SOLVENT] = solvent if solvent is not None else 1.0
    return out
