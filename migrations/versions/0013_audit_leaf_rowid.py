"""audit_leaves.leaf_index becomes the table's rowid on SQLite (INTEGER PRIMARY KEY)

A BIGINT primary key is not SQLite's rowid: every read of a leaf by its index
walked the key's B-tree and then the table's. Verification, inclusion proofs
and tiles read leaves by index ranges. SQLite can only change this by
rebuilding the table (copy, drop, rename); env.py turns foreign-key enforcement
off around migrations and this migration checks every foreign key before its
transaction commits, as SQLite's documented procedure for table rebuilds asks
(audit_accounting refers to audit_leaves): a violation rolls it back.
PostgreSQL keeps BIGINT: nothing to do there.

Revision ID: 0013_audit_leaf_rowid
Revises: 0012_court_orders
"""

from alembic import op
import sqlalchemy as sa

revision = "0013_audit_leaf_rowid"
down_revision = "0012_court_orders"
branch_labels = None
depends_on = None


def _rebuild(old: sa.types.TypeEngine[int], new: sa.types.TypeEngine[int]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("audit_leaves", recreate="always") as batch:
        batch.alter_column("leaf_index", existing_type=old, type_=new, existing_nullable=False)
    if op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").first():
        raise RuntimeError("audit_leaves rebuild: a foreign key is violated; nothing changed")


def upgrade() -> None:
    _rebuild(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _rebuild(sa.Integer(), sa.BigInteger())
