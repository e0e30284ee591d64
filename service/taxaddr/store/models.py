"""Tables of taxaddr.store (on the shared :class:`taxaddr.db.Base`)."""

from __future__ import annotations

from taxaddr.db import Base

__all__ = ["Base"]
