"""Make the resolve index cover the whole ORDER BY, so no sort grows with the catalog.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 14:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite sorts NULL lowest, so DESC already puts undated images last; others must say so.
    nulls = "" if op.get_bind().dialect.name == "sqlite" else " NULLS LAST"
    op.drop_index("ix_image_version_resolve", table_name="image_version")
    op.create_index(
        "ix_image_version_resolve",
        "image_version",
        [
            "framework_key",
            "accelerator",
            sa.text("version_class DESC"),
            sa.text("version_key DESC"),
            sa.text(f"gmt_create_time DESC{nulls}"),
            "uri",
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_image_version_resolve", table_name="image_version")
    op.create_index(
        "ix_image_version_resolve",
        "image_version",
        ["framework_key", "accelerator", "version_class", "version_key"],
    )
