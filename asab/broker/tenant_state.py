"""What the tenant's journal says about each request: holds, failures, interruptions, summary.

Pure reads of a :class:`~asab.broker.journal.Journal`, used by the worker
(:mod:`asab.broker.tenant`) after a restart and by ``asab journal`` / ``asab run --broker``.

Definitions:

* A request is **held** by this tenant from its ``reserved`` event until a later ``given_back``,
  ``measured``, ``posted`` or ``skipped`` event (measuring ends the hold because the result,
  once posted, resolves the request; ``skipped`` after a reservation means the request was no
  longer ours to give back: retracted or resolved by someone else). A held request that is not
  being worked on must be given back, or it stays ``reserved`` on the broker forever (quirk 6
  has no timeout on reservations).
* A ``failed`` event whose payload has ``"interrupted": true`` records that the tenant process
  stopped (SIGKILL, power cut) while the job ran; it is not the request's fault and is counted
  apart from job failures (:func:`job_failures`, :func:`interruptions`).
"""

from __future__ import annotations

from typing import Any

from asab.broker.journal import Event, Journal, JournalState

S = JournalState

RELEASES = (S.GIVEN_BACK, S.MEASURED, S.POSTED, S.SKIPPED)
"""Events after which a reserved request is no longer held by the tenant."""

INTERRUPTED = "interrupted"
"""Payload key of a ``failed`` event written because the tenant stopped during the job."""


def is_interruption(event: Event) -> bool:
    """Whether ``event`` is a ``failed`` event recording a tenant stop during the job."""
    return event.state is S.FAILED and bool(event.payload.get(INTERRUPTED))


def job_failures(journal: Journal, request_uuid: str) -> int:
    """``failed`` events of a request that were real job failures (not interruptions)."""
    return sum(1 for e in journal.history(request_uuid)
               if e.state is S.FAILED and not is_interruption(e))


def interruptions(journal: Journal, request_uuid: str) -> int:
    """How many times the tenant stopped while this request's job ran."""
    return sum(1 for e in journal.history(request_uuid) if is_interruption(e))


def attempts(journal: Journal, request_uuid: str) -> int:
    """How many times wet work was started for a request (``running`` events)."""
    return sum(1 for e in journal.history(request_uuid) if e.state is S.RUNNING)


def held_requests(journal: Journal) -> dict[str, Event]:
    """Requests this tenant holds on the broker → their latest event (see module docstring)."""
    held: dict[str, Event] = {}
    for event in journal.history():
        if event.state is S.RESERVED:
            held[event.request_uuid] = event
        elif event.state in RELEASES:
            held.pop(event.request_uuid, None)
        elif event.request_uuid in held:
            held[event.request_uuid] = event
    return held


def journal_summary(journal: Journal) -> list[dict[str, Any]]:
    """One row per request, in order of first sight.

    Keys: ``request``, ``state`` (latest), ``since`` (epoch s of the latest event),
    ``failures`` (job failures), ``interruptions``, ``result_uuid`` (latest posted, or None),
    ``success`` (the measured result's ``meta.success``, or None before measuring), ``why``
    (of the latest event), ``events``.
    """
    rows: dict[str, dict[str, Any]] = {}
    for e in journal.history():
        row = rows.setdefault(e.request_uuid, {
            "request": e.request_uuid, "failures": 0, "interruptions": 0,
            "result_uuid": None, "success": None, "events": 0})
        row["events"] += 1
        row["state"], row["since"], row["why"] = str(e.state), e.time, e.payload.get("why")
        if e.state is S.FAILED:
            row["interruptions" if is_interruption(e) else "failures"] += 1
        elif e.state is S.POSTED:
            row["result_uuid"] = e.payload.get("result_uuid")
        elif e.state is S.MEASURED:
            row["success"] = result_success(e.payload.get("result") or {})
    return list(rows.values())


def result_success(body: dict[str, Any]) -> bool | None:
    """``meta.success`` of a result body's measured quantity (``data[quantity].meta``)."""
    quantity = (body.get("data") or {}).get(body.get("quantity", ""))
    if not isinstance(quantity, dict):
        return None
    return (quantity.get("meta") or {}).get("success")


__all__ = ["INTERRUPTED", "RELEASES", "attempts", "held_requests", "interruptions",
           "is_interruption", "job_failures", "journal_summary", "result_success"]
