"""court orders: applied stays and lifts

Revision ID: 0012_court_orders
Revises: 0011_role_length
"""

from alembic import op
import sqlalchemy as sa

revision = "0012_court_orders"
down_revision = "0011_role_length"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "court_orders",
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("iss", sa.String(length=255), nullable=False),
        sa.Column("number", sa.String(length=256), nullable=False),
        sa.Column("court", sa.String(length=256), nullable=False),
        sa.Column("nbf", sa.BigInteger(), nullable=False),
        sa.Column("exp", sa.BigInteger(), nullable=True),
        sa.Column("lifts", sa.String(length=128), nullable=True),
        sa.Column("lifted_by", sa.String(length=128), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("applied_at", sa.BigInteger(), nullable=False),
        sa.Column("leaf_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_court_orders")),
    )


def downgrade() -> None:
    op.drop_table("court_orders")
