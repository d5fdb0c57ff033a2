"""The catalog as data: every image with its labels for export, and a summary of each region."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from catalog.config import resolve_target
from catalog.parse import times
from catalog.read import connection
from catalog.read.filters import make_filters
from catalog.read.sql import SqlResult, execute

# ImageInfo's fields first, by its names (records.PUBLIC_NAMES), then the catalog's own.
_EXPORT_COLUMNS = """v.id AS version_id, v.name AS image_name, v.uri AS image_uri,
    v.framework AS framework_name, v.framework_version, v.accelerator AS accelerator_type,
    v.python_version, v.image_id, v.region, v.cuda_version, v.os_version, v.scopes, v.official,
    v.parse_status, v.gmt_create_time AS created, v.gmt_modified_time AS modified,
    v.scope_inferred, v.host, v.namespace, v.repository, v.tag, v.digest, v.components,
    v.build_suffix, v.parse_reason, v.description, v.accessibility, v.size,
    v.valid_from AS state_since, l.key AS label_key, l.value AS label_value"""
_REGIONS = """SELECT r.region,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL)
    AS images,
    (SELECT count(*) FROM image i WHERE i.region = r.region AND i.removed_run_id IS NOT NULL)
    AS removed,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL
        AND v.accelerator IS NULL) AS no_accelerator,
    (SELECT count(*) FROM image_version v WHERE v.region = r.region AND v.valid_to IS NULL
        AND NOT EXISTS (SELECT 1 FROM image_scope s WHERE s.version_id = v.id)) AS no_scope,
    (SELECT max(s.finished_at) FROM sync_run s WHERE s.region = r.region AND s.status = 'ok')
    AS last_sync,
    (SELECT s.status FROM sync_run s WHERE s.region = r.region ORDER BY s.id DESC LIMIT 1)
    AS last_status
FROM (SELECT DISTINCT region FROM sync_run) r ORDER BY r.region"""


@dataclass(frozen=True)
class RegionInfo:
    """One region's images; those with no accelerator or no scope are reached only with
    --accelerator any or --scope any."""

    region: str
    images: int
    removed: int
    no_accelerator: int
    no_scope: int
    last_sync: str | None
    last_status: str | None


@dataclass(frozen=True)
class CatalogInfo:
    database: str
    revision: str
    size_bytes: int | None
    images: int
    regions: tuple[RegionInfo, ...]
    last_sync: str | None
    age_days: float | None


def export_rows(
    *, as_of: datetime | str | None = None, db: str | None = None
) -> Iterator[dict[str, Any]]:
    """The catalog's images (as they stood at ``as_of``), with scopes and labels, by URI."""
    _, where, params = make_filters(None, None, None, None, None, None, None, False, as_of).where()
    target = resolve_target(db)
    connection.reader(target)  # a file that is not a catalog is refused with the usual message
    if target.path is not None and "as_of" in params:
        params["as_of"] = times.stored(params["as_of"])
    sql = (
        f"SELECT {_EXPORT_COLUMNS} FROM image_version v "
        f"LEFT JOIN image_label l ON l.version_id = v.id WHERE {where} "
        "ORDER BY (v.uri IS NULL), v.uri, v.region, v.image_id, v.id, l.key"
    )
    return _images(execute(target, sql, params))


def _images(result: SqlResult) -> Iterator[dict[str, Any]]:
    """One dict per image version: the query gives one row per label, in version order."""
    image: dict[str, Any] | None = None
    for values in result.rows:
        row = dict(zip(result.columns, values, strict=True))
        key, value = row.pop("label_key"), row.pop("label_value")
        if image is None or image["version_id"] != row["version_id"]:
            if image is not None:
                yield _finished(image)
            image = {**row, "labels": {}}
        if key is not None:
            image["labels"][key] = value
    if image is not None:
        yield _finished(image)


def _finished(image: dict[str, Any]) -> dict[str, Any]:
    del image["version_id"]
    image["scopes"] = image["scopes"].split(",") if image["scopes"] else []
    image["official"] = bool(image["official"])
    image["scope_inferred"] = bool(image["scope_inferred"])
    image["components"] = json.loads(image["components"]) if image["components"] else []
    for name in ("created", "modified", "state_since"):
        image[name] = times.iso(image[name])
    return image


def info(*, db: str | None = None) -> CatalogInfo:
    """Where the catalog is, its revision, and each region's images and last successful sync."""
    target = resolve_target(db, own=True)
    handle = connection.reader(target)
    rows = handle.rows(_REGIONS)
    regions = tuple(RegionInfo(**{**row, "last_sync": times.iso(row["last_sync"])}) for row in rows)
    last = max((m for m in map(times.parse, (row["last_sync"] for row in rows)) if m), default=None)
    return CatalogInfo(
        database=target.display,
        revision=str(handle.scalar("SELECT version_num FROM alembic_version")),
        size_bytes=target.path.stat().st_size if target.path is not None else None,
        images=sum(region.images for region in regions),
        regions=regions,
        last_sync=times.iso(last),
        age_days=None if last is None else round(connection.age_days(last), 2),
    )
