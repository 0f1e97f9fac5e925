"""Turning pydantic validation errors into readable problem reasons."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from pydantic import ValidationError

_MAX_INPUT = 60


def format_location(
    loc: Sequence[str | int],
    prefix: str = "",
    names: Mapping[tuple[str, int], str] | None = None,
) -> str:
    """Dotted field path with list indexes in brackets.

    ``('pumps', 0, 'node')`` → ``pumps[0].node``, or ``pumps[0] ('A0.0').node`` when
    ``names[('pumps', 0)] == 'A0.0'``.
    """
    text = prefix
    previous: str | int | None = None
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            if names and isinstance(previous, str) and (previous, part) in names:
                text += f" ({names[(previous, part)]!r})"
        else:
            text += f".{part}" if text else part
        previous = part
    return text or "(top level)"


def validation_reasons(
    exc: ValidationError,
    prefix: str = "",
    names: Mapping[tuple[str, int], str] | None = None,
    skip: Collection[tuple[str | int, ...]] = (),
) -> list[str]:
    """One reason per pydantic error: ``"<field path>: <message> (got <input>)"``.

    Args:
        exc: the validation error.
        prefix: path prepended to each location (e.g. ``"settings"``).
        names: ``(list field, index) → item name``, shown after the index.
        skip: locations already reported otherwise (their errors are left out).

    Returns:
        The reasons, in pydantic's order.
    """
    reasons = []
    for err in exc.errors():
        if tuple(err["loc"]) in skip:
            continue
        where = format_location(err["loc"], prefix, names)
        reason = f"{where}: {err['msg']}"
        if err["type"] != "missing" and not isinstance(err.get("input"), dict):
            shown = repr(err.get("input"))
            if len(shown) > _MAX_INPUT:
                shown = shown[: _MAX_INPUT - 3] + "..."
            reason += f" (got {shown})"
        reasons.append(reason)
    return reasons
