"""The views and the stored events speak the PAI SDK's names: image_uri, image_name,
framework_name, accelerator_type, image_scope, created, modified.

The tables keep their column names (uri, name, framework, ...); what analysts read through
the views, and what output prints, is the vocabulary of ImageInfo. An event's changed_fields
named table columns ('uri', 'gmt_create_time'); it now names the same fields as the views do.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 00:40:00
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A live image was seen by the latest successful run of its region.
V_IMAGE = """
CREATE VIEW v_image AS
SELECT
    v.image_id,
    v.region,
    v.name AS image_name,
    v.uri AS image_uri,
    v.host,
    v.namespace,
    v.repository,
    v.tag,
    v.digest,
    v.framework AS framework_name,
    v.framework_version,
    v.accelerator AS accelerator_type,
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
    v.gmt_create_time AS created,
    v.gmt_modified_time AS modified,
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
    v.uri AS image_uri,
    v.name AS image_name,
    v.framework AS framework_name,
    v.framework_version,
    v.accelerator AS accelerator_type,
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
    framework_name, image_scope, accelerator_type, region, framework_version, image_uri,
    image_id, python_version, cuda_version, os_version, created, version_id
FROM (
    SELECT
        v.framework AS framework_name, s.scope AS image_scope,
        v.accelerator AS accelerator_type, v.region, v.framework_version,
        v.uri AS image_uri, v.image_id, v.python_version, v.cuda_version, v.os_version,
        v.gmt_create_time AS created, v.id AS version_id,
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

# Stored field names in image_event.changed_fields (JSON lists of quoted names), before -> now.
RENAMED = (
    ("name", "image_name"),
    ("uri", "image_uri"),
    ("gmt_create_time", "created"),
    ("gmt_modified_time", "modified"),
)
VIEWS = ("v_image", "v_image_event", "v_latest")


def _earlier(name: str) -> ModuleType:
    """An earlier migration's module, for the view text it created."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rename_fields(pairs: Sequence[tuple[str, str]]) -> None:
    expression = "changed_fields"
    for old, new in pairs:
        expression = f"replace({expression}, '\"{old}\"', '\"{new}\"')"
    op.execute(
        f"UPDATE image_event SET changed_fields = {expression} WHERE changed_fields IS NOT NULL"
    )


def _views(definitions: Sequence[str]) -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    for definition in definitions:
        op.execute(definition)


def upgrade() -> None:
    _views((V_IMAGE, V_IMAGE_EVENT, V_LATEST))
    _rename_fields(RENAMED)


def downgrade() -> None:
    views = _earlier("0003_history_views")
    _views(
        (
            _earlier("0002_v_image").V_IMAGE,
            views.V_IMAGE_EVENT,
            _earlier("0004_compact_labels_scopes").V_LATEST,
        )
    )
    _rename_fields([(new, old) for old, new in RENAMED])
