"""asab.retry: bounded tries, waits through the caller's sleep, exceptions unchanged."""

from __future__ import annotations

import pytest

from asab.retry import retrying


class Flaky:
    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, value: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"try {self.calls}")
        return value


def test_retries_until_success_waiting_through_the_given_sleep() -> None:
    sleeps, logged = [], []
    policy = retrying(4, lambda e: isinstance(e, ConnectionError), sleep=sleeps.append,
                      backoff=lambda n: 0.5 * n, on_retry=lambda n, e, d: logged.append((n, str(e), d)))
    fn = Flaky(2)
    assert policy(fn, "ok") == "ok" and fn.calls == 3
    assert sleeps == [0.5, 1.0]
    assert logged == [(1, "try 1", 0.5), (2, "try 2", 1.0)]


def test_the_last_exception_propagates_unchanged_after_the_bound() -> None:
    fn, sleeps = Flaky(10), []
    with pytest.raises(ConnectionError, match="try 3"):
        retrying(3, lambda e: isinstance(e, ConnectionError), sleep=sleeps.append)(fn, "x")
    assert fn.calls == 3 and sleeps == [0.0, 0.0]


def test_a_refused_exception_is_not_retried() -> None:
    fn = Flaky(1, ValueError)
    with pytest.raises(ValueError, match="try 1"):
        retrying(5, lambda e: isinstance(e, ConnectionError))(fn, "x")
    assert fn.calls == 1


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError):
        retrying(0, lambda e: True)
