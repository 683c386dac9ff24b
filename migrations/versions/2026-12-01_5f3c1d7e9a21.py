"""pay_bill.details: what a bill of its biller's kind says besides its amount (a traffic
fine's decision number, time, place and offence); stored account patterns checked with RE2

Account patterns are run by RE2 from now on (linear time, no backreferences or look-around).
A stored pattern RE2 refuses only for Python's ``\\Z`` is rewritten to RE2's ``\\z`` (the same
meaning); any other pattern RE2 refuses is left as it is and named in a warning: its biller's
look-ups and imports answer 422 until a pay administrator replaces the pattern.

Revision ID: 5f3c1d7e9a21
Revises: 2845900b7b29
Create Date: 2026-12-01 22:10:00+00:00
"""

import logging
from collections.abc import Sequence

import re2
import sqlalchemy as sa
from alembic import op

revision: str = "5f3c1d7e9a21"
down_revision: str | None = "2845900b7b29"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def _runs(pattern: str) -> bool:
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
    except re2.error:
        return False
    return True


def upgrade() -> None:
    op.add_column("pay_bill", sa.Column("details", sa.JSON(), nullable=True))
    connection = op.get_bind()
    billers = connection.execute(sa.text("SELECT id, code, account_pattern FROM pay_biller")).all()
    for biller_id, code, pattern in billers:
        if _runs(pattern):
            continue
        # Only where no escaped backslash could make "\\Z" ambiguous.
        rewritten = pattern if "\\\\" in pattern else pattern.replace(r"\Z", r"\z")
        if rewritten != pattern and _runs(rewritten):
            connection.execute(
                sa.text("UPDATE pay_biller SET account_pattern = :p WHERE id = :id"),
                {"p": rewritten, "id": biller_id},
            )
            continue
        log.warning(
            "biller %s: its account pattern %r cannot be run by RE2; look-ups and imports of "
            "its bills are refused until a pay administrator replaces it",
            code,
            pattern,
        )


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35 and later too), not a batch rebuild: payments and their
    # links reference the table.
    op.drop_column("pay_bill", "details")
