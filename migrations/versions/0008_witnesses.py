"""witness cosignatures; accounting records findable by disclosure id (offline proofs)

Revision ID: 0008_witnesses
Revises: 0007_rate_limit
"""

from alembic import op
import sqlalchemy as sa

revision = "0008_witnesses"
down_revision = "0007_rate_limit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_cosignatures",
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("witness", sa.String(length=256), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("cosigned_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", "witness", name=op.f("pk_audit_cosignatures")),
    )
    with op.batch_alter_table("audit_accounting") as batch:
        batch.add_column(sa.Column("disclosure_id", sa.String(length=36), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_audit_accounting_disclosure_id"), ["disclosure_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_accounting") as batch:
        batch.drop_constraint(op.f("uq_audit_accounting_disclosure_id"), type_="unique")
        batch.drop_column("disclosure_id")
    op.drop_table("audit_cosignatures")
