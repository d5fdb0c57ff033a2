"""Tables for sync runs, images, image versions, labels, scopes and events.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 13:28:12.164372
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pages", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("requests", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("retries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("seen", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("added", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("changed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("removed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("restored", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'ok', 'failed')", name=op.f("ck_sync_run_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_run")),
    )
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.create_index("ix_sync_run_region_status", ["region", "status", "id"], unique=False)

    op.create_table(
        "image",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.String(length=255), nullable=False),
        sa.Column("first_seen_run_id", sa.Integer(), nullable=False),
        sa.Column("last_seen_run_id", sa.Integer(), nullable=True),
        sa.Column("removed_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["first_seen_run_id"], ["sync_run.id"], name=op.f("fk_image_first_seen_run_id_sync_run")
        ),
        sa.ForeignKeyConstraint(
            ["last_seen_run_id"], ["sync_run.id"], name=op.f("fk_image_last_seen_run_id_sync_run")
        ),
        sa.ForeignKeyConstraint(
            ["removed_run_id"], ["sync_run.id"], name=op.f("fk_image_removed_run_id_sync_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image")),
        sa.UniqueConstraint("region", "image_id", name=op.f("uq_image_region_image_id")),
    )
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_image_removed_run_id"), ["removed_run_id"], unique=False
        )

    op.create_table(
        "image_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_pk", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("valid_from_run_id", sa.Integer(), nullable=False),
        sa.Column("valid_to_run_id", sa.Integer(), nullable=True),
        sa.Column("valid_from", sa.DateTime(), nullable=False),
        sa.Column("valid_to", sa.DateTime(), nullable=True),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.Column("accessibility", sa.String(length=32), nullable=True),
        sa.Column("workspace_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("parent_user_id", sa.String(length=64), nullable=True),
        sa.Column("gmt_create_time", sa.String(length=40), nullable=True),
        sa.Column("gmt_modified_time", sa.String(length=40), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("source_id", sa.Text(), nullable=True),
        sa.Column("source_type", sa.String(length=64), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("namespace", sa.Text(), nullable=True),
        sa.Column("repository", sa.Text(), nullable=True),
        sa.Column("tag", sa.Text(), nullable=True),
        sa.Column("digest", sa.Text(), nullable=True),
        sa.Column("official", sa.Boolean(), nullable=False),
        sa.Column("framework", sa.Text(), nullable=True),
        sa.Column("framework_key", sa.Text(), nullable=True),
        sa.Column("framework_version", sa.Text(), nullable=True),
        sa.Column("version_key", sa.Text(), nullable=False),
        sa.Column("version_class", sa.Integer(), nullable=False),
        sa.Column("accelerator", sa.String(length=16), nullable=True),
        sa.Column("python_version", sa.String(length=16), nullable=True),
        sa.Column("cuda_version", sa.String(length=16), nullable=True),
        sa.Column("os_version", sa.String(length=64), nullable=True),
        sa.Column("components", sa.Text(), nullable=True),
        sa.Column("build_suffix", sa.Text(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=True),
        sa.Column("scope_inferred", sa.Boolean(), nullable=False),
        sa.Column("parse_status", sa.String(length=16), nullable=False),
        sa.Column("parse_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "parse_status IN ('ok', 'partial', 'unrecognized')",
            name=op.f("ck_image_version_parse_status"),
        ),
        sa.ForeignKeyConstraint(
            ["image_pk"], ["image.id"], name=op.f("fk_image_version_image_pk_image")
        ),
        sa.ForeignKeyConstraint(
            ["valid_from_run_id"],
            ["sync_run.id"],
            name=op.f("fk_image_version_valid_from_run_id_sync_run"),
        ),
        sa.ForeignKeyConstraint(
            ["valid_to_run_id"],
            ["sync_run.id"],
            name=op.f("fk_image_version_valid_to_run_id_sync_run"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_version")),
    )
    with op.batch_alter_table("image_version", schema=None) as batch_op:
        batch_op.create_index(
            "ix_image_version_image_pk_is_latest", ["image_pk", "is_latest"], unique=False
        )
        batch_op.create_index(
            "ix_image_version_resolve",
            ["framework_key", "accelerator", "version_class", "version_key"],
            unique=False,
        )
        batch_op.create_index("ix_image_version_uri", ["uri"], unique=False)
        batch_op.create_index("ix_image_version_valid", ["valid_from", "valid_to"], unique=False)

    op.create_table(
        "image_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("image_pk", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("changed_fields", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('added', 'changed', 'removed', 'restored')", name=op.f("ck_image_event_kind")
        ),
        sa.ForeignKeyConstraint(
            ["image_pk"], ["image.id"], name=op.f("fk_image_event_image_pk_image")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_run.id"], name=op.f("fk_image_event_run_id_sync_run")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["image_version.id"],
            name=op.f("fk_image_event_version_id_image_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_event")),
    )
    with op.batch_alter_table("image_event", schema=None) as batch_op:
        batch_op.create_index("ix_image_event_image_pk_id", ["image_pk", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_image_event_run_id"), ["run_id"], unique=False)

    op.create_table(
        "image_label",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["image_version.id"],
            name=op.f("fk_image_label_version_id_image_version"),
        ),
        sa.PrimaryKeyConstraint("version_id", "key", name=op.f("pk_image_label")),
    )
    with op.batch_alter_table("image_label", schema=None) as batch_op:
        batch_op.create_index("ix_image_label_key_value", ["key", "value"], unique=False)

    op.create_table(
        "image_scope",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "scope IN ('training', 'inference', 'develop')", name=op.f("ck_image_scope_scope")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["image_version.id"],
            name=op.f("fk_image_scope_version_id_image_version"),
        ),
        sa.PrimaryKeyConstraint("version_id", "scope", name=op.f("pk_image_scope")),
    )
    with op.batch_alter_table("image_scope", schema=None) as batch_op:
        batch_op.create_index(
            "ix_image_scope_scope_version_id", ["scope", "version_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("image_scope", schema=None) as batch_op:
        batch_op.drop_index("ix_image_scope_scope_version_id")

    op.drop_table("image_scope")
    with op.batch_alter_table("image_label", schema=None) as batch_op:
        batch_op.drop_index("ix_image_label_key_value")

    op.drop_table("image_label")
    with op.batch_alter_table("image_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_event_run_id"))
        batch_op.drop_index("ix_image_event_image_pk_id")

    op.drop_table("image_event")
    with op.batch_alter_table("image_version", schema=None) as batch_op:
        batch_op.drop_index("ix_image_version_valid")
        batch_op.drop_index("ix_image_version_uri")
        batch_op.drop_index("ix_image_version_resolve")
        batch_op.drop_index("ix_image_version_image_pk_is_latest")

    op.drop_table("image_version")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_removed_run_id"))

    op.drop_table("image")
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_run_region_status")

    op.drop_table("sync_run")
