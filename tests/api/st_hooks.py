"""Schemathesis hooks: the rules between query parameters that OpenAPI cannot state.

OpenAPI describes each query parameter on its own; the rules that relate two of
them are in the parameters' descriptions and enforced by the server (422
``request_invalid``): ``start < end``, ``leaf_index < tree_size``, ``first <=
second``, ``from <= to`` within the longest period, and on the dashboard ``from``
and ``to`` together or not at all. For cases schemathesis generates as *valid*
(positive mode), these hooks make the pair obey its rule, so that the
``positive_data_acceptance`` check tests what the document promises; negative cases
are left alone. Loaded by the ``st`` CLI through ``SCHEMATHESIS_HOOKS``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import schemathesis

from taxaddr.audit.summary import MAX_PERIOD_DAYS

LARGEST = 2**53
# path -> (lower, upper, strictly less)
ORDERED_INTEGERS = {
    "/v1/audit/entries": ("start", "end", True),
    "/v1/audit/proof/inclusion": ("leaf_index", "tree_size", True),
    "/v1/audit/proof/consistency": ("first", "second", False),
}
PERIODS = {
    "/v1/oversight/summary",
    "/v1/reports/compliance",
    "/v1/reports/transparency",
    "/oversight",
}


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    del context
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.query, dict):
        return case
    path = case.operation.path
    if path in ORDERED_INTEGERS:
        _order_integers(case.query, *ORDERED_INTEGERS[path])
    elif path in PERIODS:
        _order_period(case.query)
    return case


def _order_integers(query: dict[str, Any], low: str, high: str, strict: bool) -> None:
    a, b = _integer(query.get(low)), _integer(query.get(high))
    if a is None or b is None:
        return
    a, b = min(a, b), max(a, b)
    if strict and a == b:
        a, b = (a - 1, b) if b == LARGEST else (a, b + 1)
    # the coverage phase sends query values as strings, the fuzzing phase as integers
    kind = type(query[low])
    query[low], query[high] = kind(a), kind(b)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and value == str(int(value)):
        return int(value)
    return None


def _order_period(query: dict[str, Any]) -> None:
    days = [d for d in (_day(query.get("from")), _day(query.get("to"))) if d is not None]
    if not days:
        return
    start, end = min(days), max(days)  # one day alone: a one-day period
    if (end - start).days > MAX_PERIOD_DAYS:
        end = start + dt.timedelta(days=MAX_PERIOD_DAYS)
    query["from"], query["to"] = start.isoformat(), end.isoformat()


def _day(value: Any) -> dt.date | None:
    if not isinstance(value, str) or len(value) != 10:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None
