"""Suggestions for mistyped names: "did you mean …", and "known: …" lists.

Used wherever an error names something unknown (a tubing node, pump, syringe, valve,
instrument, chemical or stock), so the message carries the fix. Closeness is
:func:`difflib.get_close_matches` (Ratcliff/Obershelp similarity ≥ :data:`CUTOFF`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.6
"""Minimum difflib similarity ratio for a suggestion (difflib's own default)."""

MAX_LISTED = 12
"""At most this many known names are listed; the rest are counted."""


class UnknownName(KeyError):
    """A look-up by name found nothing; the message names the closest known names.

    A :class:`KeyError` (callers catch it as such) whose ``str()`` is the plain message, not
    the quoted key :class:`KeyError` shows by default.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> str:
    """``" (did you mean 'A' or 'B'?)"`` for the known names closest to ``name``, else ``""``.

    The comparison ignores case, so ``reservoir2`` suggests ``Reservoir2`` (alone: a name
    that differs only in case is the one meant).
    """
    names = sorted(set(known))
    by_fold = {k.casefold(): k for k in names}
    if name.casefold() in by_fold:  # only the case differs: that is the one
        return f" (did you mean {by_fold[name.casefold()]!r}?)"
    close = difflib.get_close_matches(name.casefold(), list(by_fold), n=n, cutoff=CUTOFF)
    if not close:
        return ""
    shown = [repr(by_fold[c]) for c in close]
    return f" (did you mean {' or '.join(shown)}?)"


def known_names(known: Iterable[str], what: str = "known") -> str:
    """``"<what>: 'a', 'b', … (+N more)"``, sorted; ``"none is configured"`` when empty."""
    names = sorted(set(known))
    if not names:
        return "none is configured"
    shown = ", ".join(map(repr, names[:MAX_LISTED]))
    more = f" (+{len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    return f"{what}: {shown}{more}"
