"""A UTC day given on the command line (``--from``/``--to``): the API's rule, the CLI's code."""

from __future__ import annotations

from datetime import date

from taxaddr.audit.summary import parse_day
from taxaddr.errors import RequestInvalid, UsageError


def day_option(text: str, option: str) -> date:
    """``YYYY-MM-DD`` or a usage error naming ``option``."""
    try:
        return parse_day(text, option)
    except RequestInvalid as exc:  # the API's code; on the command line it is a usage error
        raise UsageError(exc.message) from None
