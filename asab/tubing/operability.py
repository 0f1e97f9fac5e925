"""Can this bench do its work? Every route a job needs, checked before any job runs.

A bench can load (every name resolves, every number is valid) and still be unusable: a stock
on a reservoir its pump cannot reach, a cell whose outlet leads nowhere. :func:`check_operable`
asks the router for each route the density and vial jobs use (the same requests as
:mod:`asab.actions.sample`, :mod:`asab.actions.vial` and :mod:`asab.actions.gravimetric`) and
turns every failure into one :class:`~asab.errors.Problem` naming the stock or node and the
router's reason (for a valve conflict: the valves that would need two positions). A broken
instrument is one problem: the routes through it are not asked again for every stock.

The routes, with ``mixer`` = ``settings.mixer_outlet``, ``sink`` = the balance vessel (else
the first waste) and "the cell" = each instrument of kind ``density_viscosity``:

* each stock: reservoir → its pump; pump → first waste (priming); pump → mixer → first waste;
  pump → mixer → the cell → sink;
* mixer → each instrument's inlet; inlet → outlet; each instrument's outlet → one of the
  wastes (and, for the cell, → the balance vessel);
* cleaning solvent: ``solvent_node`` → ``solvent_pump``; solvent pump → mixer → the cell →
  first waste;
* gas: ``gas_nodes[0]`` → the gas pump; gas pump → mixer → the cell → sink;
* each vial: mixer → vial (passing no instrument).

Parts the configuration does not have at all (no pump, no measuring instrument, no
densimeter, no balance, no cleaning pump, no stock) are problems naming the ``bench.toml`` key
to fill: a bench imported from the original ASAB project (``asab import-legacy``) lacks them
until the operator fills them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from asab.config.benches import BENCH_FILE
from asab.config.models import BenchConfig, Instrument
from asab.errors import Problem, RoutingError
from asab.tubing.graph import TubingGraph


@dataclass
class OperabilityReport:
    """What :func:`check_operable` found.

    Attributes:
        problems: each stops a job from working (``asab check-config`` exits 1).
        warnings: worth fixing, but jobs run (exit 0).
        routes_checked: how many routes were asked of the router.
    """

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    routes_checked: int = 0


class _Checker:
    def __init__(self, config: BenchConfig, stock_file: str, stock_lines) -> None:
        self.config, self.stock_file, self.stock_lines = config, stock_file, stock_lines
        self.graph = TubingGraph.from_config(config)
        self.report = OperabilityReport()

    def route(self, what: str, source: str, target: str, *, via: Sequence[str] = (),
              avoid: Sequence[str] = (), file: str = BENCH_FILE, line: int | None = None) -> bool:
        """Ask for one route; a failure becomes a problem ``<what>: <router's reason>``."""
        self.report.routes_checked += 1
        avoid = [n for n in avoid if n not in (source, target, *via)]
        try:
            self.graph.route(source, target, via=via, avoid=avoid)
        except (RoutingError, ValueError) as exc:
            self.report.problems.append(Problem(file, line, f"{what}: {exc}"))
            return False
        return True

    def exists(self, source: str, target: str) -> bool:
        """Whether a route exists (a question, not a requirement: no problem recorded)."""
        self.report.routes_checked += 1
        try:
            self.graph.route(source, target)
        except (RoutingError, ValueError):
            return False
        return True

    def problem(self, reason: str) -> None:
        self.report.problems.append(Problem(BENCH_FILE, None, reason))


def check_operable(config: BenchConfig, *, stock_file: str = "stockSolutions.csv",
                   stock_lines: dict[str, int] | None = None) -> OperabilityReport:
    """Check that every route a job needs exists on ``config``'s tubing.

    Args:
        config: a bench that loaded (its names resolve; see
            :func:`asab.config.loader.load_bench`).
        stock_file: file name used in problems about stocks.
        stock_lines: stock name → line of its row in ``stock_file``.

    Returns:
        The report; nothing is raised.
    """
    c = _Checker(config, stock_file, stock_lines or {})
    cells = _measuring_cells(c)
    working = _check_instruments(c)
    cells = [cell for cell in cells if cell.name in working]  # one problem per broken cell
    _check_stocks(c, cells)
    _check_cleaning(c, cells)
    _check_vials(c)
    _check_device_names(c)
    return c.report


def _inlets(config: BenchConfig, keep: Instrument | None = None) -> list[str]:
    return [i.inlet for i in config.instruments if keep is None or i.name != keep.name]


def _sink(config: BenchConfig) -> str:
    return config.balance.vessel if config.balance else config.settings.waste_nodes[0]


def _measuring_cells(c: _Checker) -> list[Instrument]:
    cfg = c.config
    cells = [i for i in cfg.instruments if i.kind == "density_viscosity"]
    if not cells:
        c.problem("no [[instruments]] entry of kind 'density_viscosity': add one with name, "
                  "inlet and outlet (the tubing nodes where liquid enters and leaves the "
                  "densimeter cell) and measuring_volume (mL)")
    if cfg.densimeter is None:
        c.problem("no [densimeter] section: add one with instrument (the name of the "
                  "[[instruments]] cell), interface ('lims' with lims_input_dir and "
                  "lims_output_dir, or 'rs232' with [densimeter.serial] url), method and "
                  "temperature")
    if cfg.balance is None:
        c.problem("no [balance] section: every sample is verified by weighing; add [balance] "
                  "with vessel (the node on the pan) and [balance.serial] with url (the serial "
                  "port) and the balance's serial settings")
    if not cfg.pumps:
        c.problem("no [[pumps]]: add one per syringe pump with name, node, syringe (a "
                  "[[syringes]] name) and device (its name in the Qmix configuration)")
    return cells


def _check_stocks(c: _Checker, cells: list[Instrument]) -> None:
    cfg, s = c.config, c.config.settings
    sink = _sink(cfg)
    if not cfg.stocks:
        c.problem("no stock solutions: name a stock table in [layout] stocks "
                  "(e.g. stocks = \"stockSolutions.csv\")")
    for stock in cfg.stocks:
        where = {"file": c.stock_file, "line": c.stock_lines.get(stock.name)}
        node = cfg.pump(stock.pump).node
        who = f"stock {stock.name!r}"
        c.route(f"{who}: its pump {stock.pump} cannot draw from its reservoir",
                stock.reservoir, node, **where)
        c.route(f"{who}: pump {stock.pump} cannot empty into waste (priming)",
                node, s.waste_nodes[0], **where)
        c.route(f"{who}: pump {stock.pump} cannot push through the mixer to waste",
                node, s.waste_nodes[0], via=[s.mixer_outlet], avoid=_inlets(cfg), **where)
        for cell in cells:
            c.route(f"{who}: pump {stock.pump} cannot push through {cell.name}",
                    node, sink, via=[s.mixer_outlet, cell.inlet, cell.outlet],
                    avoid=_inlets(cfg, cell), **where)


def _check_instruments(c: _Checker) -> set[str]:
    """Each instrument's own routes; returns the names of those whose routes all exist (the
    routes through a broken cell are then not asked again, stock by stock)."""
    cfg, s = c.config, c.config.settings
    working: set[str] = set()
    for inst in cfg.instruments:
        if inst.inlet == inst.outlet:
            c.problem(f"instrument {inst.name!r}: inlet and outlet are the same node "
                      f"{inst.inlet!r}; give the cell's two ends")
            continue
        ok = c.route(f"instrument {inst.name!r}: no sample reaches its inlet from the mixer",
                     s.mixer_outlet, inst.inlet, avoid=_inlets(cfg, inst))
        ok &= c.route(f"instrument {inst.name!r}: no route through the cell",
                      inst.inlet, inst.outlet)
        if not any(c.exists(inst.outlet, w) for w in s.waste_nodes):
            ok &= c.route(f"instrument {inst.name!r}: its outlet leads to no waste",
                          inst.outlet, s.waste_nodes[0])
        if ok and inst.kind == "density_viscosity" and cfg.balance is not None:
            ok &= c.route(f"instrument {inst.name!r}: its outlet does not reach the balance "
                          "vessel", inst.outlet, cfg.balance.vessel)
        if ok:
            working.add(inst.name)
    return working


def _check_cleaning(c: _Checker, cells: list[Instrument]) -> None:
    cfg, s = c.config, c.config.settings
    names = {p.name for p in cfg.pumps}
    if not s.solvent_pump:
        c.problem("settings.solvent_pump is not set: name the pump that draws cleaning "
                  f"solvent from {s.solvent_node!r}")
    gas_pump = s.gas_pump or s.solvent_pump
    lines = [("solvent", s.solvent_pump, s.solvent_node, s.waste_nodes[0]),
             ("gas", gas_pump, s.gas_nodes[0] if s.gas_nodes else "", _sink(cfg))]
    for what, pump, source, sink in lines:
        if pump not in names or not source:
            continue  # unset or unknown: reported above or by the loader
        node = cfg.pump(pump).node
        c.route(f"{what} pump {pump} cannot draw {what} from {source!r}", source, node)
        for cell in cells:
            c.route(f"{what} pump {pump} cannot push {what} through {cell.name}", node, sink,
                    via=[s.mixer_outlet, cell.inlet, cell.outlet], avoid=_inlets(cfg, cell))


def _check_device_names(c: _Checker) -> None:
    """The CETONI driver finds each pump and valve by its name in the Qmix configuration."""
    cfg = c.config
    for what, names in (("pumps", [p.name for p in cfg.pumps if not p.device]),
                        ("valves", [v.name for v in cfg.valves
                                    if v.driver == "cetoni" and not v.device])):
        if names:
            c.problem(f"{what} without a device name: {', '.join(names)}; set {what}[].device "
                      "to each one's name in the Qmix device configuration (the driver opens "
                      "them by that name)")


def _check_vials(c: _Checker) -> None:
    cfg, s = c.config, c.config.settings
    for vial in s.vial_nodes:
        c.route(f"vial {vial!r} cannot be reached from the mixer", s.mixer_outlet, vial,
                avoid=_inlets(cfg))
