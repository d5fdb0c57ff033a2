"""On PostgreSQL: compare ordered text byte by byte, as SQLite does, and drop length limits.

PostgreSQL compares text by the database's locale unless told otherwise; under en_US, '~' and
'-' are nearly ignored, so the version_key range behind a '2.1' prefix lookup and the ordering
of prereleases go wrong. The columns that are ordered or range-compared get COLLATE "C". The
VARCHAR lengths were never rules (SQLite does not enforce them), so on PostgreSQL they only
made a sync fail where an SQLite catalog accepts the same listing: they become TEXT.
SQLite files are left exactly as they are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 16:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out, not read from the models: a migration describes the schema as of its revision.
# (table, column, length before 0007 or None for TEXT, compared byte by byte from 0007)
COLUMNS: tuple[tuple[str, str, int | None, bool], ...] = (
    ("sync_run", "region", 64, True),
    ("sync_run", "source", 16, False),
    ("sync_run", "status", 16, False),
    ("image", "region", 64, True),
    ("image", "image_id", 255, True),
    ("image_version", "region", 64, True),
    ("image_version", "content_hash", 64, False),
    ("image_version", "image_id", 255, True),
    ("image_version", "uri", None, True),
    ("image_version", "accessibility", 32, False),
    ("image_version", "workspace_id", 64, False),
    ("image_version", "user_id", 64, False),
    ("image_version", "parent_user_id", 64, False),
    ("image_version", "gmt_create_time", 40, True),
    ("image_version", "gmt_modified_time", 40, False),
    ("image_version", "source_type", 64, False),
    ("image_version", "framework", None, True),
    ("image_version", "version_key", None, True),
    ("image_version", "accelerator", 16, False),
    ("image_version", "python_version", 16, False),
    ("image_version", "cuda_version", 16, False),
    ("image_version", "os_version", 64, False),
    ("image_version", "parse_status", 16, False),
    ("image_label", "key", 255, True),
    ("image_scope", "scope", 16, False),
    ("image_event", "kind", 16, False),
)
VIEWS = ("v_image", "v_image_event", "v_latest")


def _old_type(length: int | None) -> sa.types.TypeEngine[str]:
    return sa.Text(collation="default") if length is None else sa.String(length, "default")


def _new_type(ordered: bool) -> sa.types.TypeEngine[str]:
    return sa.Text(collation="C" if ordered else None)


def _retype(upgrading: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # PostgreSQL will not retype a column a view reads: keep each view's own text, drop the
    # views, and create them again unchanged.
    views = [
        (name, bind.execute(sa.text("SELECT pg_get_viewdef(:name)"), {"name": name}).scalar())
        for name in VIEWS
    ]
    for name, _ in views:
        op.execute(f"DROP VIEW {name}")
    for table, column, length, ordered in COLUMNS:
        old, new = _old_type(length), _new_type(ordered)
        op.alter_column(
            table,
            column,
            type_=new if upgrading else old,
            existing_type=old if upgrading else new,
        )
    for name, definition in views:
        op.execute(f"CREATE VIEW {name} AS {definition}")


def upgrade() -> None:
    _retype(upgrading=True)


def downgrade() -> None:
    _retype(upgrading=False)
