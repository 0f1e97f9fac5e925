"""Simulated Sartorius Entris II balance speaking SBI bytes (attach with ``simbench://``).

The simulator parses what the host writes with its own code (never the driver's codec,
``shared/docs/architecture.md`` principle 2) and answers with lines in the format of
``shared/docs/device_protocols.md``: ``<sign> <8-char value> <3-char unit>\\r\\n`` (16
characters), optionally behind a 6-character ID code, a blank unit field while not stable,
and ``Stat`` lines for overload/underload.

Physics kept: the gross load on the pan (``load()``, g, relative to the empty pan), the zero
offset and tare (g), the load seen at the last change and when it changed. After a change
larger than ``stability_band`` the display is unstable for ``settle_time`` × the ambient
filter factor, with noise ``unstable_noise``; afterwards noise ``stable_noise``. Values are
rounded to the readability. Taring uses the true (noise-free) load at once, where a real
balance first waits for stability.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from asab.clock import Clock

log = logging.getLogger(__name__)

DATA_FILE = "sartorius_entris_ii.toml"
OUTPUT_UNITS = {"g": 1.0, "mg": 1000.0}
"""Output unit → displayed units per g."""
MAX_INBOX = 256
"""Bytes buffered without a line end before the simulator drops them (an SBI command is ≤ 8)."""
MAX_OUTBOX = 4096
"""Bytes kept unread before the oldest are dropped (a UART buffer overflowing)."""


@dataclass(frozen=True)
class EntrisIIParams:
    """Instrument parameters (masses in g, times in s); see ``data/sartorius_entris_ii.toml``."""

    model: str
    serial_number: str
    readability: float
    capacity: float
    underload_limit: float
    zero_range: float
    settle_time: float
    stability_band: float
    unstable_noise: float
    stable_noise: float
    response_delay: float
    id_code: bool
    unit: str
    auto_print: bool
    print_interval: float
    ambient_filter: dict[str, float] = field(default_factory=lambda: {"L": 1.0})
    seed: int | None = None

    def __post_init__(self) -> None:
        positive = ("readability", "capacity", "underload_limit", "print_interval", "stability_band")
        bad = [n for n in positive if getattr(self, n) <= 0]
        bad += [n for n in ("zero_range", "settle_time", "unstable_noise", "stable_noise",
                            "response_delay") if getattr(self, n) < 0]
        if self.unit not in OUTPUT_UNITS:
            bad.append(f"unit {self.unit!r} (use g or mg)")
        if bad:
            raise ValueError(f"invalid Entris II parameters: {', '.join(bad)}")


def load_params(path: str | Path | None = None, **overrides: Any) -> EntrisIIParams:
    """Read parameters from TOML (default: the packaged ``data/sartorius_entris_ii.toml``).

    Args:
        path: TOML file to read instead of the packaged one.
        **overrides: field values replacing those from the file, e.g. ``unit="mg"``.

    Raises:
        ValueError: unknown or invalid parameters. OSError: file not readable.
    """
    if path is None:
        text = resources.files("simulators").joinpath("data", DATA_FILE).read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    raw = tomllib.loads(text)
    known = {f.name for f in fields(EntrisIIParams)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown Entris II parameters: {sorted(unknown)}")
    params = EntrisIIParams(**raw)
    return replace(params, **overrides) if overrides else params


def format_value_line(grams: float, p: EntrisIIParams, stable: bool, id_code: str = "") -> bytes:
    """Format a value line: ``[ID(6)]<sign> <value(8)> <unit(3)>\\r\\n`` (16 or 22 chars).

    Raises:
        OverflowError: the value does not fit 8 characters.
    """
    per_g = OUTPUT_UNITS[p.unit]
    decimals = max(0, round(-math.log10(p.readability * per_g)))
    number = f"{abs(grams * per_g):.{decimals}f}"
    if len(number) > 8:
        raise OverflowError(f"{number} does not fit the 8-character value field")
    sign = "-" if grams < 0 and float(number) != 0.0 else "+"
    unit = p.unit if stable else ""
    prefix = id_code.ljust(6) if id_code else ""
    return f"{prefix}{sign} {number:>8} {unit:<3}\r\n".encode("ascii")


def format_text_line(text: str) -> bytes:
    """A text reply (status, model, serial number), padded to 14 characters + CR LF."""
    return f"{text:<14}\r\n".encode("ascii")


class EntrisIISimulator:
    """Byte-level Entris II: ``receive`` host bytes, ``transmit`` the answers.

    Args:
        load: returns the gross mass on the pan in g (0 = empty pan).
        clock: simulated clock; if it offers ``add_listener`` the simulator samples the load
            and emits auto-print lines on every step.
        params: instrument parameters; default :func:`load_params`.

    Attributes:
        silent: fault injection: when true the balance never answers (``inject("no_reply")``).

    Fault injection (:meth:`inject`, :meth:`clear_faults`; catalogue in
    :mod:`simulators.faults`): ``no_reply``; ``garbled`` and ``truncated`` (``lines``: how many
    output lines are damaged, default all); ``busy`` (the next command received starts an
    internal adjustment: no answers for ``duration`` s, default 5 s, then unstable for a settle
    time); ``overload`` (``mass`` g put on the pan, default
    capacity + 1 g, so the balance prints ``Stat High``).
    """

    FAULT_KINDS = {"no_reply": set(), "garbled": {"lines"}, "truncated": {"lines"},
                   "busy": {"duration"}, "overload": {"mass"}}
    """Fault kind → parameters it takes."""

    def __init__(
        self, load: Callable[[], float], clock: Clock, params: EntrisIIParams | None = None
    ) -> None:
        self.params = params or load_params()
        self.silent = False
        self._garble = 0  # output lines left to garble (−1: all)
        self._truncate = 0  # output lines left to truncate (−1: all)
        self._busy_until = -math.inf
        self._busy_armed: float | None = None  # s of adjustment started by the next command
        self._extra_mass = 0.0
        self._load = load
        self._clock = clock
        self._lock = threading.RLock()
        self._rng = random.Random(self.params.seed)
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._pending: list[tuple[float, bytes]] = []
        self._reset_state()
        self._commands: dict[str, Callable[[], None]] = {
            "P": self._print, "T": self._zero_or_tare, "U": self._tare, "V": self._zero,
            "Z": self._unsettle, "S": self._restart,
            "x1_": lambda: self._reply(format_text_line(self.params.model)),
            "x2_": lambda: self._reply(format_text_line(self.params.serial_number)),
        }
        for letter in self.params.ambient_filter:
            self._commands[letter] = lambda letter=letter: setattr(self, "ambient", letter)
        add_listener = getattr(clock, "add_listener", None)
        if add_listener is not None:
            add_listener(self.tick)

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        """Power-on state (also the ``S`` restart): zero at the empty pan, no tare."""
        now = self._clock.now()
        self.zero_offset = 0.0
        self.tare_mass = 0.0
        self.ambient = "L"
        self.auto_running = self.params.auto_print
        self._next_print = now + self.params.print_interval
        self._ref_load = float(self._load()) + self._extra_mass
        self._changed_at = -math.inf

    def _restart(self) -> None:
        """``S``: restart: power-on state, unstable for a settle time."""
        self._reset_state()
        self._unsettle()

    # ------------------------------------------------------------------ faults
    def inject(self, kind: str, **params: float) -> None:
        """Inject a fault (see the class docstring).

        Raises:
            ValueError: unknown kind or parameter.
        """
        if kind not in self.FAULT_KINDS:
            raise ValueError(f"balance: unknown fault {kind!r} (known: {sorted(self.FAULT_KINDS)})")
        if set(params) - self.FAULT_KINDS[kind]:
            raise ValueError(f"fault {kind!r} takes {sorted(self.FAULT_KINDS[kind])}, "
                             f"got {sorted(params)}")
        with self._lock:
            lines = params.get("lines", -1)
            lines = -1 if lines is None or lines < 0 or math.isinf(lines) else int(lines)
            if kind == "no_reply":
                self.silent = True
            elif kind == "garbled":
                self._garble = lines
            elif kind == "truncated":
                self._truncate = lines
            elif kind == "busy":
                self._busy_armed = float(params.get("duration", 5.0))
            else:
                self._extra_mass = float(params.get("mass", self.params.capacity + 1.0))

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self.silent = False
            self._garble = self._truncate = 0
            self._busy_until = -math.inf
            self._busy_armed = None
            self._extra_mass = 0.0

    def _damage(self, data: bytes) -> bytes:
        """Apply injected line damage: bit errors in the value field, or a cut-off line."""
        if self._garble:
            self._garble -= self._garble > 0
            data = bytes(b ^ 0x80 if 2 <= i < 10 and i % 3 == 0 else b for i, b in enumerate(data))
        if self._truncate:
            self._truncate -= self._truncate > 0
            data = data[: len(data) // 2]
        return data

    def close(self) -> None:
        """Stop listening to the clock."""
        remove = getattr(self._clock, "remove_listener", None)
        if remove is not None:
            remove(self.tick)

    def _observe(self, now: float) -> float:
        """Sample the load; a change beyond the stability band restarts settling."""
        gross = float(self._load()) + self._extra_mass
        if abs(gross - self._ref_load) > self.params.stability_band:
            self._ref_load = gross
            self._changed_at = now
        return gross

    def is_stable(self) -> bool:
        """True once the settle time (× ambient filter factor) has passed since the last change."""
        with self._lock:
            now = self._clock.now()
            self._observe(now)
            factor = self.params.ambient_filter.get(self.ambient, 1.0)
            return now - self._changed_at >= self.params.settle_time * factor

    # ------------------------------------------------------------------ serial side
    def receive(self, data: bytes) -> None:
        """Bytes from the host. Commands end with LF; a trailing CR and leading ESC are dropped."""
        with self._lock:
            self._inbox += data
            while b"\n" in self._inbox:
                frame, _, rest = bytes(self._inbox).partition(b"\n")
                self._inbox = bytearray(rest)
                self._execute(frame.rstrip(b"\r").removeprefix(b"\x1b"))
            if len(self._inbox) > MAX_INBOX:
                self._inbox.clear()

    def transmit(self) -> bytes:
        """Bytes sent since the last call (replies become visible after ``response_delay``)."""
        with self._lock:
            self._release(self._clock.now())
            out = bytes(self._outbox)
            self._outbox.clear()
            return out

    def tick(self, now: float, dt: float) -> None:
        """Clock listener: sample the load and emit due auto-print lines."""
        with self._lock:
            self._observe(now)
            interval = self.params.print_interval
            if now - self._next_print > 10 * interval:
                self._next_print = now
            while self.auto_running and self._next_print <= now:
                self._next_print += interval
                if not self.silent and now >= self._busy_until:
                    self._emit(self._line())
            self._release(now)

    def _execute(self, frame: bytes) -> None:
        if self._busy_armed is not None:  # injected: an adjustment starts now
            self._busy_until = self._clock.now() + self._busy_armed
            self._busy_armed = None
            self._changed_at = self._busy_until  # unstable for a settle time afterwards
        cmd = frame.decode("ascii", errors="replace")
        handler = self._commands.get(cmd)
        if handler is None:
            log.debug("Entris II simulator ignores %r", frame)
            return
        handler()

    def _reply(self, data: bytes) -> None:
        if not self.silent and self._clock.now() >= self._busy_until:
            self._pending.append((self._clock.now() + self.params.response_delay, data))

    def _release(self, now: float) -> None:
        due = [d for t, d in self._pending if t <= now]
        self._pending = [(t, d) for t, d in self._pending if t > now]
        for data in due:
            self._emit(data)

    def _emit(self, data: bytes) -> None:
        self._outbox += self._damage(data)
        if len(self._outbox) > MAX_OUTBOX:
            del self._outbox[: len(self._outbox) - MAX_OUTBOX]

    # ------------------------------------------------------------------ commands
    def _line(self) -> bytes:
        """The line the balance prints now: a value, or a ``Stat`` line."""
        p = self.params
        on_cell = self._observe(self._clock.now()) - self.zero_offset
        if on_cell > p.capacity:
            return format_text_line("Stat     High")
        if on_cell < -p.underload_limit:
            return format_text_line("Stat     Low")
        stable = self.is_stable()
        noise = self._rng.gauss(0.0, p.stable_noise if stable else p.unstable_noise)
        id_code = ("N" if self.tare_mass else "G") if p.id_code else ""
        try:
            return format_value_line(on_cell - self.tare_mass + noise, p, stable, id_code)
        except OverflowError:
            return format_text_line("Stat     High")

    def _print(self) -> None:
        """``P``: one line, or start/stop the stream when auto-print is configured."""
        if self.params.auto_print:
            self.auto_running = not self.auto_running
            self._next_print = self._clock.now() + self.params.print_interval
        else:
            self._reply(self._line())

    def _tare(self) -> None:
        """``U``: tare the current load."""
        self.tare_mass = self._observe(self._clock.now()) - self.zero_offset

    def _zero(self) -> None:
        """``V``: zero, only within ``zero_range`` of the empty pan (clears the tare)."""
        gross = self._observe(self._clock.now())
        if abs(gross) <= self.params.zero_range:
            self.zero_offset, self.tare_mass = gross, 0.0
        else:
            log.info("Entris II simulator: zero outside the zero range ignored (%.4f g)", gross)

    def _zero_or_tare(self) -> None:
        """``T``: zero within the zero range, tare beyond it."""
        if abs(self._observe(self._clock.now())) <= self.params.zero_range:
            self._zero()
        else:
            self._tare()

    def _unsettle(self) -> None:
        """``Z`` internal adjustment: the display is unstable for a settle time."""
        self._changed_at = self._clock.now()
