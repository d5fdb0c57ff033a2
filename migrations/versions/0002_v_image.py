"""The v_image view: current images with their parsed fields, no joins needed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 13:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A live image was seen by the latest successful run of its region.
V_IMAGE = """
CREATE VIEW v_image AS
SELECT
    v.image_id,
    v.region,
    v.name,
    v.uri,
    v.host,
    v.namespace,
    v.repository,
    v.tag,
    v.digest,
    v.framework,
    v.framework_version,
    v.accelerator,
    v.python_version,
    v.cuda_version,
    v.os_version,
    v.scopes,
    v.scope_inferred,
    v.official,
    v.components,
    v.build_suffix,
    v.parse_status,
    v.parse_reason,
    v.description,
    v.accessibility,
    v.size,
    v.gmt_create_time,
    v.gmt_modified_time,
    i.first_seen_run_id,
    (
        SELECT max(r.id) FROM sync_run r WHERE r.region = v.region AND r.status = 'ok'
    ) AS last_seen_run_id,
    v.valid_from AS state_since,
    v.version_key,
    v.version_class,
    v.id AS version_id,
    i.id AS image_pk
FROM image_version v
JOIN image i ON i.id = v.image_pk
WHERE v.valid_to IS NULL
"""


def upgrade() -> None:
    op.execute(V_IMAGE)


def downgrade() -> None:
    op.execute("DROP VIEW v_image")
