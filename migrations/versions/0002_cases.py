"""trusted issuers and case references

Revision ID: 0002_cases
Revises: 0001_store
"""

from alembic import op
import sqlalchemy as sa

revision = "0002_cases"
down_revision = "0001_store"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_issuers",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_issuers")),
    )
    op.create_table(
        "case_issuer_keys",
        sa.Column("iss", sa.String(length=255), nullable=False),
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("kty", sa.String(length=8), nullable=False),
        sa.Column("crv", sa.String(length=16), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=65), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["iss"], ["case_issuers.id"], name=op.f("fk_case_issuer_keys_iss_case_issuers")
        ),
        sa.PrimaryKeyConstraint("iss", "kid", name=op.f("pk_case_issuer_keys")),
    )
    op.create_table(
        "revoked_case_jtis",
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_case_jtis")),
    )
    op.create_table(
        "case_references",
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("iss", sa.String(length=255), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=256), nullable=False),
        sa.Column("court", sa.String(length=256), nullable=False),
        sa.Column("agency", sa.String(length=128), nullable=False),
        sa.Column("max_disclosures", sa.Integer(), nullable=False),
        sa.Column("disclosures_used", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_case_references")),
    )
    with op.batch_alter_table("case_references", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_references_number"), ["number"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("case_references", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_references_number"))
    op.drop_table("case_references")
    op.drop_table("revoked_case_jtis")
    op.drop_table("case_issuer_keys")
    op.drop_table("case_issuers")
