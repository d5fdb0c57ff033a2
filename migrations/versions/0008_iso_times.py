"""Times pai-catalog writes, as ISO 8601 UTC with a Z in SQLite files, like the API's times.

SQLAlchemy stored run and state times as '2026-12-05 13:14:04.617208' while the API's times
were kept as '2021-01-02T14:42:53.000000Z': two forms in one file. Both are now the second
form, which still sorts as text in time order. PostgreSQL holds them as timestamps, which have
no text form to change.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 00:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("sync_run", "started_at"),
    ("sync_run", "finished_at"),
    ("image_version", "valid_from"),
    ("image_version", "valid_to"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, column in COLUMNS:
        # SQLAlchemy always wrote six fraction digits; a value without any gets them.
        op.execute(
            f"UPDATE {table} SET {column} = substr({column}, 1, 10) || 'T' || "
            f"substr({column}, 12, 8) || CASE WHEN length({column}) > 19 "
            f"THEN substr({column}, 20) ELSE '.000000' END || 'Z' "
            f"WHERE {column} LIKE '____-__-__ __:__:__%'"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, column in COLUMNS:
        op.execute(
            f"UPDATE {table} SET {column} = substr({column}, 1, 10) || ' ' || "
            f"substr({column}, 12, length({column}) - 12) "
            f"WHERE {column} LIKE '____-__-__T__:__:__%Z'"
        )
