"""All reads: retrieve one image, list images and versions, show one image; no network."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from catalog import versions
from catalog.config import resolve_target, utcnow
from catalog.errors import AmbiguousError, NotFoundError, UsageError
from catalog.filters import (
    Filters,
    build_of,
    describe,
    make_filters,
    requested_build,
    version_clause,
)
from catalog.readdb import Reader, reader

MAX_LISTED = 25
MAX_REMEMBERED = 4096
_ANSWERS: dict[tuple[Any, ...], tuple[tuple[int, int], ImageInfo]] = {}

_COLUMNS = """v.id, v.image_id, v.region, v.name, v.uri, v.framework, v.framework_version,
    v.accelerator, v.python_version, v.cuda_version, v.os_version, v.scopes, v.official,
    v.parse_status, v.gmt_create_time, v.version_key, v.version_class, v.valid_to"""
# Newest image first among equal versions; an image without a time after every dated one.
_ORDER = "v.version_class DESC, v.version_key DESC, v.gmt_create_time DESC NULLS LAST, v.uri ASC"


@dataclass(frozen=True)
class ImageInfo:
    """One image, with the PAI SDK's ImageInfo fields first."""

    image_name: str | None
    image_uri: str | None
    framework_name: str | None
    framework_version: str | None
    image_scope: str | None
    accelerator_type: str | None
    python_version: str | None
    image_id: str
    region: str
    cuda_version: str | None
    os_version: str | None
    labels: Mapping[str, str | None] = field(default_factory=lambda: Labels(), hash=False)
    scopes: tuple[str, ...] = ()
    official: bool = False
    parse_status: str = "ok"
    created: str | None = None
    removed: bool = False


def catalog_age(db: Reader) -> str:
    """'synced 2026-11-27 (1 day ago)', or that it has never been synced."""
    last = db.scalar("SELECT max(finished_at) FROM sync_run WHERE status = 'ok'")
    if last is None:
        return "the catalog has never been synced"
    moment = last if isinstance(last, datetime) else datetime.fromisoformat(str(last))
    days = (utcnow() - moment).days
    return f"catalog last updated {moment:%Y-%m-%d} ({days} day{'s' if days != 1 else ''} ago)"


# The labels come in the same statement, as one JSON object per row.
_LABELS_JSON = {
    "sqlite": "(SELECT json_group_object(l.key, l.value) FROM image_label l "
    "WHERE l.version_id = v.id) AS labels_json",
    "postgresql": "(SELECT json_object_agg(l.key, l.value ORDER BY l.key) FROM image_label l "
    "WHERE l.version_id = v.id)::text AS labels_json",
}


class Labels(dict[str, "str | None"]):
    """An image's labels: a dict that cannot be changed, since answers are shared."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("ImageInfo.labels cannot be changed; copy it with dict(labels)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]


def _labels(row: Mapping[str, Any]) -> Labels:
    raw = row.get("labels_json")
    if not raw:
        return Labels()
    return Labels(json.loads(raw) if isinstance(raw, str) else raw)


def _info(db: Reader, row: Mapping[str, Any], scope: str | None, labels: bool) -> ImageInfo:
    scopes = tuple(row["scopes"].split(",")) if row["scopes"] else ()
    return ImageInfo(
        image_name=row["name"],
        image_uri=row["uri"],
        framework_name=row["framework"],
        framework_version=row["framework_version"],
        image_scope=scope or (scopes[0] if scopes else None),
        accelerator_type=row["accelerator"],
        python_version=row["python_version"],
        image_id=row["image_id"],
        region=row["region"],
        cuda_version=row["cuda_version"],
        os_version=row["os_version"],
        labels=_labels(row) if labels else Labels(),
        scopes=scopes,
        official=bool(row["official"]),
        parse_status=row["parse_status"],
        created=row["gmt_create_time"],
        removed=row["valid_to"] is not None,
    )


def _select(
    db: Reader,
    f: Filters,
    extra: str = "",
    params: Mapping[str, Any] | None = None,
    limit: int | None = None,
    labels: bool = False,
) -> list[dict[str, Any]]:
    join, where, base = f.where()
    columns = f"{_COLUMNS}, {_LABELS_JSON[db.dialect]}" if labels else _COLUMNS
    sql = f"SELECT {columns} FROM image_version v {join} WHERE {where} {extra} ORDER BY {_ORDER}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return db.rows(sql, {**base, **params} if params else base)


def _known_frameworks(db: Reader, f: Filters) -> list[str]:
    state = Filters(include_removed=f.include_removed, as_of=f.as_of)
    _, where, params = state.where()
    rows = db.rows(
        f"SELECT DISTINCT v.framework FROM image_version v WHERE {where} "
        "AND v.framework IS NOT NULL ORDER BY v.framework",
        params,
    )
    return [row["framework"] for row in rows]


def _explain_missing(
    db: Reader, f: Filters, framework_name: str, request: versions.VersionRequest
) -> NotFoundError:
    age = catalog_age(db)
    known = _known_frameworks(db, f)
    if f.framework_key not in {name.lower() for name in known}:
        close = difflib.get_close_matches(f.framework_key or "", [k.lower() for k in known], n=1)
        hint = ""
        if close:
            hint = f" Did you mean {next(k for k in known if k.lower() == close[0])!r}?"
        return NotFoundError(
            f"Unknown framework {framework_name!r}.{hint} Known frameworks: "
            f"{', '.join(known) or 'none'} ({age})."
        )
    available = list_versions_for(db, f)
    where = describe(f)
    if not available:
        return NotFoundError(f"No {framework_name} image {where} ({age}).")
    shown = ", ".join(available[:MAX_LISTED])
    more = f" and {len(available) - MAX_LISTED} more" if len(available) > MAX_LISTED else ""
    return NotFoundError(
        f"No {framework_name} version matches {request.text!r} {where}; available versions: "
        f"{shown}{more} ({age})."
    )


def list_versions_for(db: Reader, f: Filters) -> list[str]:
    """Distinct versions in semantic order, highest first; unparseable ones last.

    Spellings of one version (2.7 and 2.7.0) are listed once, in their longest spelling;
    build variants (1.15PAI) are listed after their release.
    """
    join, where, params = f.where()
    rows = db.rows(
        f"SELECT DISTINCT v.framework_version, v.version_key FROM image_version v {join} "
        f"WHERE {where} AND v.framework_version IS NOT NULL",
        params,
    )
    best: dict[tuple[str, str], str] = {}
    for row in rows:
        text, key = row["framework_version"], row["version_key"]
        group = (key, build_of(text) or "") if key.startswith(versions.KEY_PARSED) else (key, "")
        if len(text) > len(best.get(group, "")):
            best[group] = text
    ordered = sorted(
        best.items(), key=lambda item: (item[0][0], _Reverse(item[0][1])), reverse=True
    )
    return [text for _, text in ordered]


class _Reverse(str):
    """Sorts backwards, so that under reverse=True build variants follow their release."""

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)


def retrieve(
    framework_name: str,
    framework_version: str = "latest",
    accelerator_type: str = "CPU",
    image_scope: str = "training",
    *,
    region: str | None = None,
    python_version: str | None = None,
    cuda_version: str | None = None,
    os: str | None = None,
    as_of: datetime | str | None = None,
    db: str | None = None,
) -> ImageInfo:
    """The best image for a framework and version request, like the PAI SDK's ``retrieve``.

    Answers are remembered per database until another connection commits to it, so a service
    resolving in a loop does not repeat the query.
    """
    handle = reader(resolve_target(db))
    generation = handle.generation()
    key = (
        handle.target.url, framework_name, framework_version, accelerator_type, image_scope,
        region, python_version, cuda_version, os, as_of,
    )  # fmt: skip
    remembered = _ANSWERS.get(key)
    if remembered is not None and generation is not None and remembered[0] == generation:
        return remembered[1]
    info = _retrieve(
        handle, framework_name, framework_version, accelerator_type, image_scope,
        region, python_version, cuda_version, os, as_of,
    )  # fmt: skip
    if generation is not None:
        if len(_ANSWERS) >= MAX_REMEMBERED:
            _ANSWERS.pop(next(iter(_ANSWERS)))
        _ANSWERS[key] = (generation, info)
    return info


def _retrieve(
    handle: Reader,
    framework_name: str,
    framework_version: str,
    accelerator_type: str,
    image_scope: str,
    region: str | None,
    python_version: str | None,
    cuda_version: str | None,
    os: str | None,
    as_of: datetime | str | None,
) -> ImageInfo:
    if not framework_name or not framework_name.strip():
        raise UsageError("Give a framework name, such as PyTorch or TensorFlow.")
    request = _request(framework_version)
    f = make_filters(
        framework_name,
        accelerator_type,
        image_scope,
        region,
        python_version,
        cuda_version,
        os,
        False,
        as_of,
    )
    clause, params = version_clause(request)
    # An image whose URI does not parse cannot be pulled: never an answer.
    clause += " AND v.parse_status <> 'unrecognized'"
    wanted_build = requested_build(request)
    if request.kind == "range":
        rows = [
            r
            for r in _select(handle, f, clause, labels=True)
            if request.matches(r["framework_version"])
        ]
    else:
        rows = _best_rows(handle, f, request, clause, params, wanted_build is not None)
    if wanted_build:
        # Asking for 2.1.0-accl prefers that variant among the images of equal version.
        rows = sorted(rows, key=lambda r: build_of(r["framework_version"]) != wanted_build)
    if not rows:
        raise _explain_missing(handle, f, framework_name, request)
    best = rows[0]
    if f.region is None:
        _check_one_region(handle, f, best)
    return _info(handle, best, f.scope, labels=True)


def _request(framework_version: str | None) -> versions.VersionRequest:
    try:
        return versions.parse_request(framework_version)
    except ValueError as exc:
        raise UsageError(f"{exc}; ask for latest, 2.1.0, 2.1 or a range like >=2.0,<2.2.") from None


def _best_rows(
    db: Reader,
    f: Filters,
    request: versions.VersionRequest,
    clause: str,
    params: dict[str, Any],
    all_ties: bool,
) -> list[dict[str, Any]]:
    """The best candidates, one version class at a time: each query is then a pure index seek
    (releases first; prereleases only when no release matches; unparsed versions last)."""
    classes = (2, 1, 0) if request.kind == "latest" else (2, 1)
    for version_class in classes:
        rows = _select(
            db,
            f,
            f"{clause} AND v.version_class = {version_class}",
            params,
            limit=None if all_ties else 1,
            labels=True,
        )
        if rows:
            return rows
    return []


def _check_one_region(db: Reader, f: Filters, best: Mapping[str, Any]) -> None:
    rows = _select(
        db,
        f,
        "AND v.version_key = :top AND v.version_class = :cls AND v.region <> :region",
        {"top": best["version_key"], "cls": best["version_class"], "region": best["region"]},
    )
    regions = sorted({best["region"], *(row["region"] for row in rows)})
    if len(regions) > 1:
        raise AmbiguousError(
            f"{best['framework']} {best['framework_version']} is in {len(regions)} regions "
            f"({', '.join(regions[:5])}{', ...' if len(regions) > 5 else ''}); "
            f"choose one with region= (--region) ({catalog_age(db)})."
        )


def list_images(
    framework_name: str | None = None,
    *,
    framework_version: str | None = None,
    image_scope: str | None = None,
    accelerator_type: str | None = None,
    region: str | None = None,
    python_version: str | None = None,
    cuda_version: str | None = None,
    os: str | None = None,
    include_removed: bool = False,
    as_of: datetime | str | None = None,
    labels: bool = False,
    db: str | None = None,
) -> list[ImageInfo]:
    """Every image matching the filters, highest version first."""
    f = make_filters(
        framework_name,
        accelerator_type,
        image_scope,
        region,
        python_version,
        cuda_version,
        os,
        include_removed,
        as_of,
    )
    handle = reader(resolve_target(db))
    request = _request(framework_version)
    clause, params = ("", {}) if request.kind == "latest" else version_clause(request)
    rows = _select(handle, f, clause, params, labels=labels)
    if request.kind == "range":
        rows = [r for r in rows if request.matches(r["framework_version"])]
    return [_info(handle, row, f.scope, labels) for row in rows]


def list_versions(
    framework_name: str,
    *,
    image_scope: str | None = None,
    accelerator_type: str | None = None,
    region: str | None = None,
    include_removed: bool = False,
    as_of: datetime | str | None = None,
    db: str | None = None,
) -> list[str]:
    """The framework's versions, highest first (prereleases after releases)."""
    if not framework_name or not framework_name.strip():
        raise UsageError("Give a framework name, such as PyTorch or TensorFlow.")
    f = make_filters(
        framework_name,
        accelerator_type,
        image_scope,
        region,
        None,
        None,
        None,
        include_removed,
        as_of,
    )
    handle = reader(resolve_target(db))
    found = list_versions_for(handle, f)
    if not found:
        raise _explain_missing(handle, f, framework_name, versions.parse_request("latest"))
    return found


def show(uri_or_id: str, *, region: str | None = None, db: str | None = None) -> ImageInfo:
    """One image by URI or ImageId, removed ones included."""
    handle = reader(resolve_target(db))
    f = Filters(region=region.strip().lower() if region else None, include_removed=True)
    rows = _select(
        handle,
        f,
        "AND (v.uri = :needle OR v.image_id = :needle)",
        {"needle": uri_or_id.strip()},
        labels=True,
    )
    if not rows:
        raise NotFoundError(f"No image with URI or ImageId {uri_or_id!r} ({catalog_age(handle)}).")
    regions = sorted({row["region"] for row in rows})
    if len(regions) > 1:
        raise AmbiguousError(
            f"{uri_or_id!r} is in {len(regions)} regions ({', '.join(regions[:5])}); "
            "choose one with --region."
        )
    rows.sort(key=lambda row: row["valid_to"] is not None)  # the live image first
    return _info(handle, rows[0], None, labels=True)
