"""What each image URI's tag pointed at: the registry's manifest digest, media type and
platforms, one row per digest a URI was seen to point at (image_manifest); and the URIs whose
registry did not answer, so that they wait behind the others (image_manifest_miss).

Runs that ask registries are sync_run rows of source 'digests'; they list no images, so the
region's last successful listing (v_image.last_seen_run_id) no longer counts them. v_image
carries the URI's current manifest digest and platforms.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _earlier(name: str) -> ModuleType:
    """An earlier migration's module, for the view text it created."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


V_IMAGE_0009 = _earlier("0009_sdk_names").V_IMAGE
# The last listing, not the last registry check; the URI's newest manifest row is current.
V_IMAGE = (
    V_IMAGE_0009.replace(
        "r.region = v.region AND r.status = 'ok'",
        "r.region = v.region AND r.status = 'ok' AND r.source <> 'digests'",
    )
    .replace(
        "    i.id AS image_pk\n",
        "    i.id AS image_pk,\n    m.digest AS manifest_digest,\n    m.platforms\n",
    )
    .replace(
        "JOIN image i ON i.id = v.image_pk\n",
        "JOIN image i ON i.id = v.image_pk\n"
        "LEFT JOIN image_manifest m ON m.id = (\n"
        "    SELECT max(n.id) FROM image_manifest n WHERE n.uri = v.uri\n"
        ")\n",
    )
)
assert V_IMAGE.count("image_manifest") == 2 and "'digests'" in V_IMAGE


def upgrade() -> None:
    op.create_table(
        "image_manifest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "uri", sa.Text().with_variant(sa.Text(collation="C"), "postgresql"), nullable=False
        ),
        sa.Column(
            "digest", sa.String(length=80).with_variant(sa.Text(), "postgresql"), nullable=False
        ),
        sa.Column("media_type", sa.Text(), nullable=True),
        sa.Column("platforms", sa.Text(), nullable=True),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_run.id"], name=op.f("fk_image_manifest_run_id_sync_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_manifest")),
    )
    op.create_index("ix_image_manifest_uri_id", "image_manifest", ["uri", "id"])
    op.create_table(
        "image_manifest_miss",
        sa.Column(
            "uri", sa.Text().with_variant(sa.Text(collation="C"), "postgresql"), nullable=False
        ),
        sa.Column("failed_at", sa.DateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_run.id"], name=op.f("fk_image_manifest_miss_run_id_sync_run")
        ),
        sa.PrimaryKeyConstraint("uri", name=op.f("pk_image_manifest_miss")),
    )
    op.execute("DROP VIEW v_image")
    op.execute(V_IMAGE)


def downgrade() -> None:
    op.execute("DROP VIEW v_image")
    op.execute(V_IMAGE_0009)
    op.drop_table("image_manifest_miss")
    op.drop_index("ix_image_manifest_uri_id", table_name="image_manifest")
    op.drop_table("image_manifest")
