"""requester usage: case references seen per named requester, subjects disclosed per requester

Revision ID: 0009_requester_usage
Revises: 0008_witnesses
"""

from alembic import op
import sqlalchemy as sa

revision = "0009_requester_usage"
down_revision = "0008_witnesses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requester_cases",
        sa.Column("requester_id", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("nbf", sa.BigInteger(), nullable=False),
        sa.Column("exp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("requester_id", "jti", name=op.f("pk_requester_cases")),
    )
    op.create_table(
        "requester_subjects",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("requester_id", sa.String(length=64), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=False),
        sa.Column("disclosed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_requester_subjects")),
    )
    op.create_index(
        "ix_requester_subjects_requester_time",
        "requester_subjects",
        ["requester_id", "disclosed_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_requester_subjects_requester_time", table_name="requester_subjects")
    op.drop_table("requester_subjects")
    op.drop_table("requester_cases")
