"""Bounded retries, through `tenacity <https://tenacity.readthedocs.io>`_, waiting on the caller's clock.

Every retry loop in asab outside the actions layer is one :func:`retrying` call: the FINALES2
client's backoff, the CETONI status queries, the RS-232 densimeter's idempotent commands. The
wait between tries goes through the ``sleep`` the caller passes (a :class:`~asab.clock.Clock`'s
``sleep``, or a test's), never through ``time.sleep``, so simulations and tests stay on
virtual time. tenacity reads ``time.monotonic`` only for its statistics; no decision here
depends on it (tries are bounded by count, waits by ``backoff``).

Kept out of :mod:`asab.clock` on purpose: importing tenacity costs about 0.1 s (it imports
asyncio), which only the modules that retry pay.
"""

from __future__ import annotations

from collections.abc import Callable
import tenacity


def no_wait(seconds: float) -> None:
    """A ``sleep`` for retries that try again at once (no time passes)."""


def retrying(attempts: int, retry_on: Callable[[BaseException], bool], *,
             sleep: Callable[[float], None] = no_wait,
             backoff: Callable[[int], float] | None = None,
             on_retry: Callable[[int, BaseException, float], None] | None = None) -> tenacity.Retrying:
    """A retry policy: up to ``attempts`` tries while the failure is one ``retry_on`` accepts.

    Call the result with the function and its arguments: ``retrying(...)(fn, *args)``.

    Args:
        attempts: tries in all (≥ 1; 1 means no retry).
        retry_on: ``retry_on(exc)`` is True for a failure worth another try.
        sleep: how to wait between tries, in s (``clock.sleep``); default: not at all.
        backoff: s to wait after failed try ``n`` (1-based); default 0.
        on_retry: called as ``on_retry(n, exc, delay)`` before waiting after failed try ``n``
            (for logging).

    Returns:
        A ``tenacity.Retrying``. Calling it returns what the first successful try returns;
        the exception of the last try, or of a try ``retry_on`` refuses, propagates
        unchanged (``reraise=True``), never a ``tenacity.RetryError``.

    Raises:
        ValueError: ``attempts`` < 1.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")

    def wait(state: tenacity.RetryCallState) -> float:
        return backoff(state.attempt_number) if backoff is not None else 0.0

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            on_retry(state.attempt_number, state.outcome.exception(), state.next_action.sleep)

    return tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts), wait=wait,
                             retry=tenacity.retry_if_exception(retry_on), sleep=sleep,
                             before_sleep=before_sleep, reraise=True)
