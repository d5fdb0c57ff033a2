"""The catalog as data: every image with its labels for export, and a summary of each region."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from catalog.config import resolve_target
from catalog.parse import times
from catalog.parse.uri import mirrored
from catalog.read import connection, statements
from catalog.read.filters import make_filters
from catalog.read.imageinfo import mirror_of
from catalog.read.sql import SqlResult, execute


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
    *, as_of: datetime | str | None = None, mirror: str | None = None, db: str | None = None
) -> Iterator[dict[str, Any]]:
    """The catalog's images (as they stood at ``as_of``), with scopes and labels, by URI; with
    a ``mirror`` (or PAI_CATALOG_MIRROR), each with the URI it has behind it too."""
    f = make_filters(None, None, None, None, None, None, None, False, as_of)
    prefix = mirror_of(mirror)
    sql, params = statements.export(f)
    target = resolve_target(db)
    connection.reader(target)  # a file that is not a catalog is refused with the usual message
    if target.path is not None and "as_of" in params:
        params["as_of"] = times.stored(params["as_of"])
    rows = _images(execute(target, sql, params))
    return rows if prefix is None else (_with_mirror(row, prefix) for row in rows)


def _with_mirror(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The row with mirror_uri right after image_uri."""
    uri = row["image_uri"]
    pairs = list(row.items())
    at = [name for name, _ in pairs].index("image_uri") + 1
    pairs.insert(at, ("mirror_uri", mirrored(uri, prefix) if uri else None))
    return dict(pairs)


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
    image["platforms"] = image["platforms"].split(",") if image["platforms"] else []
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
    rows = handle.rows(statements.REGIONS)
    regions = tuple(RegionInfo(**{**row, "last_sync": times.iso(row["last_sync"])}) for row in rows)
    last = max((m for m in map(times.parse, (row["last_sync"] for row in rows)) if m), default=None)
    return CatalogInfo(
        database=target.display,
        revision=str(handle.scalar(statements.REVISION)),
        size_bytes=target.path.stat().st_size if target.path is not None else None,
        images=sum(region.images for region in regions),
        regions=regions,
        last_sync=times.iso(last),
        age_days=None if last is None else round(connection.age_days(last), 2),
    )
