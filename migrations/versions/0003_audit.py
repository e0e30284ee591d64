"""audit log and accounting

Revision ID: 0003_audit
Revises: 0002_cases
"""

from alembic import op
import sqlalchemy as sa

revision = "0003_audit"
down_revision = "0002_cases"
branch_labels = None
depends_on = None

_SUMMARY_COLUMNS = ["day", "agency", "statute", "outcome", "reason"]


def upgrade() -> None:
    op.create_table(
        "audit_leaves",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("agency", sa.String(length=256), nullable=False),
        sa.Column("statute", sa.String(length=256), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("case_jti", sa.String(length=256), nullable=True),
        sa.Column("subject_ref", sa.String(length=64), nullable=True),
        sa.Column("leaf_json", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_audit_leaves")),
    )
    with op.batch_alter_table("audit_leaves", schema=None) as batch_op:
        batch_op.create_index("ix_audit_leaves_summary", _SUMMARY_COLUMNS, unique=False)
        batch_op.create_index(batch_op.f("ix_audit_leaves_case_jti"), ["case_jti"], unique=False)

    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("node_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index", name=op.f("pk_audit_nodes")),
        sqlite_with_rowid=False,
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("compact_range", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.bulk_insert(head, [{"id": 1, "tree_size": 0, "compact_range": b""}])

    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_checkpoints_tree_size"), ["tree_size"], unique=False
        )

    op.create_table(
        "audit_accounting",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["leaf_index"],
            ["audit_leaves.leaf_index"],
            name=op.f("fk_audit_accounting_leaf_index_audit_leaves"),
        ),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_audit_accounting")),
    )


def downgrade() -> None:
    op.drop_table("audit_accounting")
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_checkpoints_tree_size"))
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_head")
    op.drop_table("audit_nodes")
    with op.batch_alter_table("audit_leaves", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_leaves_case_jti"))
        batch_op.drop_index("ix_audit_leaves_summary")
    op.drop_table("audit_leaves")
