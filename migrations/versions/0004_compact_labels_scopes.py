"""Store labels and scopes compactly: no rowid, no secondary indexes.

Labels are most of a catalog's bytes; their primary key (version_id, key) already serves every
lookup the tool makes, so a rowid and a (key, value) index only doubled them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 14:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# v_latest reads image_scope, so it is dropped while the table is rebuilt (as of 0003).
V_LATEST = """
CREATE VIEW v_latest AS
SELECT
    framework, scope, accelerator, region, framework_version, uri, image_id,
    python_version, cuda_version, os_version, gmt_create_time, version_id
FROM (
    SELECT
        v.framework, s.scope, v.accelerator, v.region, v.framework_version, v.uri,
        v.image_id, v.python_version, v.cuda_version, v.os_version, v.gmt_create_time,
        v.id AS version_id,
        ROW_NUMBER() OVER (
            PARTITION BY v.framework_key, s.scope, v.accelerator, v.region
            ORDER BY v.version_key DESC, (v.gmt_create_time IS NULL) ASC,
                v.gmt_create_time DESC, v.uri ASC
        ) AS position
    FROM image_version v
    JOIN image_scope s ON s.version_id = v.id
    WHERE v.valid_to IS NULL
        AND v.version_class = 2
        AND v.parse_status <> 'unrecognized'
        AND v.framework IS NOT NULL
) ranked
WHERE position = 1
"""


def _label_table(name: str, with_rowid: bool) -> None:
    op.create_table(
        name,
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["image_version.id"],
            name="fk_image_label_version_id_image_version",
        ),
        sa.PrimaryKeyConstraint("version_id", "key", name="pk_image_label"),
        sqlite_with_rowid=with_rowid,
    )


def _scope_table(name: str, with_rowid: bool) -> None:
    op.create_table(
        name,
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "scope IN ('training', 'inference', 'develop')", name="ck_image_scope_scope"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["image_version.id"],
            name="fk_image_scope_version_id_image_version",
        ),
        sa.PrimaryKeyConstraint("version_id", "scope", name="pk_image_scope"),
        sqlite_with_rowid=with_rowid,
    )


def _rebuild(with_rowid: bool) -> None:
    """SQLite cannot change a table's rowid in place: copy each table into a new one."""
    for table, make, columns in (
        ("image_label", _label_table, "version_id, key, value"),
        ("image_scope", _scope_table, "version_id, scope"),
    ):
        make(f"_new_{table}", with_rowid)
        op.execute(f"INSERT INTO _new_{table} ({columns}) SELECT {columns} FROM {table}")
        op.drop_table(table)
        op.rename_table(f"_new_{table}", table)


def upgrade() -> None:
    op.execute("DROP VIEW v_latest")
    op.drop_index("ix_image_label_key_value", table_name="image_label")
    op.drop_index("ix_image_scope_scope_version_id", table_name="image_scope")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=False)
    op.execute(V_LATEST)


def downgrade() -> None:
    op.execute("DROP VIEW v_latest")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=True)
    op.create_index("ix_image_scope_scope_version_id", "image_scope", ["scope", "version_id"])
    op.create_index("ix_image_label_key_value", "image_label", ["key", "value"])
    op.execute(V_LATEST)
