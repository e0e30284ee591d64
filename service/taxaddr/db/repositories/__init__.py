"""Repositories, one module per aggregate: the only code that runs SQL for the domain.

Each function runs in the caller's session (or connection) and transaction; the domain
packages keep their logic and call these for the rows. Hot statements come compiled
from :mod:`taxaddr.db.statements` and run on the DBAPI cursor.
"""
