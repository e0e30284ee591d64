"""Decisions as generators of write transactions, driven synchronously or on the loop.

A decision (:func:`taxaddr.disclosure.core._disclose`) reads, decides, then *yields*
each write transaction it needs as a body (``Callable[[Session], T]``, see
:mod:`taxaddr.db.group`); the driver runs the body in a committed transaction and
sends its result back into the generator — or throws the body's exception in, at
the same ``yield``, so the decision handles a refusal or a replay exactly where the
``with transaction:`` block used to stand. A decision's return value is its outcome.

:func:`run_steps` drives a decision in a thread (waiting for each commit);
:func:`run_steps_async` on the event loop (awaiting each commit, so the loop decides
other requests meanwhile and their transactions join the same group commit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")
R = TypeVar("R")

Steps = Generator[Callable[[Session], Any], Any, R]
"""A decision: yields write bodies, receives their results, returns ``R``."""


def run_steps(steps: Steps[R], run: Callable[[Callable[[Session], Any]], Any]) -> R:
    """Drive ``steps``, running each yielded body with ``run`` (which commits it)."""
    try:
        body = next(steps)
        while True:
            try:
                result = run(body)
            except Exception as exc:  # noqa: BLE001 - the body's failure goes back into the decision
                body = steps.throw(exc)
            else:
                body = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def run_steps_async(
    steps: Steps[R], run: Callable[[Callable[[Session], Any]], Awaitable[Any]]
) -> R:
    """:func:`run_steps`, awaiting each body's commit."""
    try:
        body = next(steps)
        while True:
            try:
                result = await run(body)
            except Exception as exc:  # noqa: BLE001 - as in run_steps
                body = steps.throw(exc)
            else:
                body = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
