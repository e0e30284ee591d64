"""Re-export of the requester tables, now in :mod:`taxaddr.db.schema` (until nothing imports it)."""

from taxaddr.db.schema import ROLES, RequesterRow, UsedRequestId

__all__ = ["ROLES", "RequesterRow", "UsedRequestId"]
