"""taxpayer accounting: role disclosure_officer; leaves findable by subject pseudonym

Revision ID: 0010_accounting
Revises: 0009_requester_usage
"""

from alembic import op

revision = "0010_accounting"
down_revision = "0009_requester_usage"
branch_labels = None
depends_on = None

_NEW = "role IN ('requester', 'oversight', 'monitor', 'admin', 'disclosure_officer')"
_OLD = "role IN ('requester', 'oversight', 'monitor', 'admin')"


def upgrade() -> None:
    with op.batch_alter_table("requesters") as batch:
        batch.drop_constraint(op.f("ck_requesters_role"), type_="check")
        batch.create_check_constraint(op.f("ck_requesters_role"), _NEW)
    op.create_index("ix_audit_leaves_subject_ref", "audit_leaves", ["subject_ref"])


def downgrade() -> None:
    op.drop_index("ix_audit_leaves_subject_ref", table_name="audit_leaves")
    with op.batch_alter_table("requesters") as batch:
        batch.drop_constraint(op.f("ck_requesters_role"), type_="check")
        batch.create_check_constraint(op.f("ck_requesters_role"), _OLD)
