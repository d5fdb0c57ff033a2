"""Drop uri from the resolve index: images that tie on version and time are rare, and the
URI made the index a third of a catalog's bytes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 14:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create(with_uri: bool) -> None:
    # SQLite sorts NULL lowest, so DESC already puts undated images last; others must say so.
    nulls = "" if op.get_bind().dialect.name == "sqlite" else " NULLS LAST"
    columns: list[str | sa.TextClause] = [
        "framework_key",
        "accelerator",
        sa.text("version_class DESC"),
        sa.text("version_key DESC"),
        sa.text(f"gmt_create_time DESC{nulls}"),
    ]
    op.create_index(
        "ix_image_version_resolve", "image_version", [*columns, *(["uri"] if with_uri else [])]
    )


def upgrade() -> None:
    op.drop_index("ix_image_version_resolve", table_name="image_version")
    _create(with_uri=False)


def downgrade() -> None:
    op.drop_index("ix_image_version_resolve", table_name="image_version")
    _create(with_uri=True)
