"""requesters, replay guard and case usage

Revision ID: 0004_api
Revises: 0003_audit
"""

from alembic import op
import sqlalchemy as sa

revision = "0004_api"
down_revision = "0003_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requesters",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('requester', 'oversight', 'monitor', 'admin')",
            name=op.f("ck_requesters_role"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requesters")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_requesters_fingerprint")),
    )
    op.create_table(
        "request_ids",
        sa.Column("requester_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("leaf_index", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("requester_id", "request_id", name=op.f("pk_request_ids")),
    )


def downgrade() -> None:
    op.drop_table("request_ids")
    op.drop_table("requesters")
