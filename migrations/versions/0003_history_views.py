"""The v_image_event and v_latest views for analysts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

V_IMAGE_EVENT = """
CREATE VIEW v_image_event AS
SELECT
    e.id AS event_id,
    e.kind,
    e.changed_fields,
    r.id AS run_id,
    r.region,
    r.source AS run_source,
    r.started_at AS run_started_at,
    r.finished_at AS run_finished_at,
    i.image_id,
    v.uri,
    v.name,
    v.framework,
    v.framework_version,
    v.accelerator,
    v.scopes,
    v.python_version,
    v.cuda_version,
    v.os_version,
    e.version_id,
    i.id AS image_pk
FROM image_event e
JOIN sync_run r ON r.id = e.run_id
JOIN image i ON i.id = e.image_pk
JOIN image_version v ON v.id = e.version_id
"""

# The release a resolve for "latest" would pick, per framework, scope, accelerator and region.
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


def upgrade() -> None:
    op.execute(V_IMAGE_EVENT)
    op.execute(V_LATEST)


def downgrade() -> None:
    op.execute("DROP VIEW v_latest")
    op.execute("DROP VIEW v_image_event")
