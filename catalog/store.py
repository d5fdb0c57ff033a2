"""All writes: apply one complete listing of a region as one run, in one transaction."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy import exc as sa_exc

from catalog import tags, versions
from catalog.errors import DatabaseError, SafetyError
from catalog.models import Base, Image, ImageEvent, ImageLabel, ImageScope, ImageVersion, SyncRun
from catalog.records import ApiImage

_tables = Base.metadata.tables
run_t = _tables[SyncRun.__tablename__]
image_t = _tables[Image.__tablename__]
version_t = _tables[ImageVersion.__tablename__]
label_t = _tables[ImageLabel.__tablename__]
scope_t = _tables[ImageScope.__tablename__]
event_t = _tables[ImageEvent.__tablename__]

# Fields whose change makes a new version; "labels" stands for the whole label set.
COMPARED_FIELDS = (
    "name",
    "description",
    "uri",
    "accessibility",
    "workspace_id",
    "user_id",
    "parent_user_id",
    "gmt_create_time",
    "gmt_modified_time",
    "size",
    "source_id",
    "source_type",
)


MASS_REMOVAL_SHARE = 0.2
MASS_REMOVAL_MIN = 5


@dataclass(frozen=True)
class RunInfo:
    """What a run is, before the catalog is touched: its region, origin and crawl cost."""

    region: str
    source: str  # "sync" or "import"
    detail: str | None = None
    started_at: datetime | None = None
    pages: int = 0
    requests: int = 0
    retries: int = 0


@dataclass(frozen=True)
class RunStats:
    """What one run did to one region."""

    run_id: int
    region: str
    seen: int
    added: int
    changed: int
    removed: int
    restored: int


def utcnow() -> datetime:
    """Now in UTC (naive, as stored); PAI_CATALOG_BUILD_TIME (unix seconds) pins it, so that
    building a catalog to ship is reproducible."""
    epoch = os.environ.get("PAI_CATALOG_BUILD_TIME")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc).replace(tzinfo=None)
    return datetime.now(timezone.utc).replace(tzinfo=None)


def version_row(image: ApiImage, region: str) -> dict[str, Any]:
    """The image_version columns for one API record: its fields and what they mean."""
    parsed = tags.parse_image(image.uri, {k: v or "" for k, v in image.labels})
    return {
        **image.fields,
        "image_id": image.key,
        "region": region,
        "content_hash": image.content_hash,
        "host": parsed.host,
        "namespace": parsed.namespace,
        "repository": parsed.repository,
        "tag": parsed.tag,
        "digest": parsed.digest,
        "official": parsed.official,
        "framework": parsed.framework,
        "framework_key": parsed.framework.lower() if parsed.framework else None,
        "framework_version": parsed.framework_version,
        "version_key": versions.sort_key(parsed.framework_version),
        "version_class": versions.version_class(parsed.framework_version),
        "accelerator": parsed.accelerator,
        "python_version": parsed.python_version,
        "cuda_version": parsed.cuda_version,
        "os_version": parsed.os_version,
        "components": json.dumps([list(c) for c in parsed.components])
        if parsed.components
        else None,
        "build_suffix": parsed.build_suffix,
        "scopes": ",".join(parsed.scopes) or None,
        "scope_inferred": parsed.scope_inferred,
        "parse_status": parsed.parse_status,
        "parse_reason": parsed.parse_reason,
    }


def _start_run(conn: Connection, run: RunInfo) -> int:
    result = conn.execute(
        insert(run_t).values(
            region=run.region,
            source=run.source,
            detail=run.detail,
            started_at=run.started_at or utcnow(),
            status="running",
            pages=run.pages,
            requests=run.requests,
            retries=run.retries,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def _current(conn: Connection, region: str) -> dict[str, dict[str, Any]]:
    """The latest version of every image of the region, live or removed, by image key."""
    query = (
        select(
            image_t.c.id.label("image_pk"),
            image_t.c.image_id,
            image_t.c.removed_run_id,
            version_t.c.id.label("version_id"),
            version_t.c.content_hash,
            *[version_t.c[name] for name in COMPARED_FIELDS],
        )
        .join(version_t, version_t.c.image_pk == image_t.c.id)
        .where(image_t.c.region == region, version_t.c.is_latest.is_(True))
    )
    return {row.image_id: row._asdict() for row in conn.execute(query)}


def _labels_of(conn: Connection, version_id: int) -> dict[str, str | None]:
    rows = conn.execute(
        select(label_t.c.key, label_t.c.value).where(label_t.c.version_id == version_id)
    )
    return {row.key: row.value for row in rows}


def _changed_fields(conn: Connection, old: dict[str, Any], image: ApiImage) -> list[str]:
    names = [name for name in COMPARED_FIELDS if old[name] != image.fields.get(name)]
    if _labels_of(conn, old["version_id"]) != dict(image.labels):
        names.append("labels")
    return names


def _insert_version(
    conn: Connection, image_pk: int, image: ApiImage, region: str, run_id: int, now: datetime
) -> int:
    row = version_row(image, region)
    row.update(
        image_pk=image_pk,
        valid_from_run_id=run_id,
        valid_from=now,
        valid_to=None,
        valid_to_run_id=None,
        is_latest=True,
    )
    version_id = int(conn.execute(insert(version_t).values(**row)).inserted_primary_key[0])  # type: ignore[index]
    if image.labels:
        conn.execute(
            insert(label_t),
            [{"version_id": version_id, "key": k, "value": v} for k, v in image.labels],
        )
    scopes = row["scopes"].split(",") if row["scopes"] else []
    if scopes:
        conn.execute(insert(scope_t), [{"version_id": version_id, "scope": s} for s in scopes])
    return version_id


def _close_version(conn: Connection, version_id: int, run_id: int, now: datetime) -> None:
    conn.execute(
        update(version_t)
        .where(version_t.c.id == version_id, version_t.c.valid_to.is_(None))
        .values(valid_to=now, valid_to_run_id=run_id)
    )


def _event(
    conn: Connection,
    run_id: int,
    image_pk: int,
    version_id: int,
    kind: str,
    fields: Sequence[str] = (),
) -> None:
    conn.execute(
        insert(event_t).values(
            run_id=run_id,
            image_pk=image_pk,
            version_id=version_id,
            kind=kind,
            changed_fields=json.dumps(list(fields)) if fields else None,
        )
    )


def _last_ok_run(conn: Connection, region: str, before: int) -> int | None:
    query = select(run_t.c.id).where(
        run_t.c.region == region, run_t.c.status == "ok", run_t.c.id < before
    )
    return conn.execute(query.order_by(run_t.c.id.desc()).limit(1)).scalar()


def _check_removals(
    region: str, current: dict[str, dict[str, Any]], images: Sequence[ApiImage]
) -> None:
    """Refuse a listing that would remove more than 20% (and more than 5) of the live images."""
    live = [key for key, old in current.items() if old["removed_run_id"] is None]
    listed = {image.key for image in images}
    gone = sum(1 for key in live if key not in listed)
    if gone > MASS_REMOVAL_MIN and gone > MASS_REMOVAL_SHARE * len(live):
        raise SafetyError(
            f"{region}: this run would remove {gone} of {len(live)} live images "
            f"({gone / len(live):.0%}); nothing was written. If the removal is real, "
            "run again with --allow-mass-removal."
        )


def _apply(
    conn: Connection,
    region: str,
    images: Sequence[ApiImage],
    run_id: int,
    allow_mass_removal: bool,
) -> dict[str, int]:
    now = conn.execute(select(run_t.c.started_at).where(run_t.c.id == run_id)).scalar_one()
    current = _current(conn, region)
    if not allow_mass_removal:
        _check_removals(region, current, images)
    counts = {"added": 0, "changed": 0, "removed": 0, "restored": 0}
    for image in images:
        old = current.pop(image.key, None)
        if old is None:
            image_pk = int(
                conn.execute(
                    insert(image_t).values(
                        region=region, image_id=image.key, first_seen_run_id=run_id
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            version_id = _insert_version(conn, image_pk, image, region, run_id, now)
            _event(conn, run_id, image_pk, version_id, "added")
            counts["added"] += 1
            continue
        removed = old["removed_run_id"] is not None
        if not removed and old["content_hash"] == image.content_hash:
            continue
        fields = (
            _changed_fields(conn, old, image) if old["content_hash"] != image.content_hash else []
        )
        image_pk = old["image_pk"]
        _close_version(conn, old["version_id"], run_id, now)
        conn.execute(
            update(version_t).where(version_t.c.id == old["version_id"]).values(is_latest=False)
        )
        version_id = _insert_version(conn, image_pk, image, region, run_id, now)
        if removed:
            conn.execute(
                update(image_t)
                .where(image_t.c.id == image_pk)
                .values(removed_run_id=None, last_seen_run_id=None)
            )
        kind = "restored" if removed else "changed"
        _event(conn, run_id, image_pk, version_id, kind, fields)
        counts[kind] += 1
    gone = [old for old in current.values() if old["removed_run_id"] is None]
    last_ok = _last_ok_run(conn, region, run_id) if gone else None
    for old in gone:
        _close_version(conn, old["version_id"], run_id, now)
        conn.execute(
            update(image_t)
            .where(image_t.c.id == old["image_pk"])
            .values(removed_run_id=run_id, last_seen_run_id=last_ok)
        )
        _event(conn, run_id, old["image_pk"], old["version_id"], "removed")
        counts["removed"] += 1
    return counts


def apply_listing(
    engine: Engine,
    run: RunInfo,
    images: Sequence[ApiImage],
    *,
    allow_mass_removal: bool = False,
) -> RunStats:
    """Store a complete listing of a region as one run: all of it, or nothing but a failure."""
    try:
        with engine.begin() as conn:
            run_id = _start_run(conn, run)
            counts = _apply(conn, run.region, images, run_id, allow_mass_removal)
            conn.execute(
                update(run_t)
                .where(run_t.c.id == run_id)
                .values(status="ok", finished_at=utcnow(), seen=len(images), **counts)
            )
    except SafetyError as exc:
        record_failure(engine, run, str(exc))
        raise
    except sa_exc.SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        record_failure(engine, run, f"database error: {reason}")
        raise DatabaseError(f"Could not store the {run.region} listing: {reason}.") from None
    except BaseException as exc:  # a bug or an interrupt: the transaction is rolled back
        record_failure(engine, run, f"{type(exc).__name__}: {exc}")
        raise
    return RunStats(run_id=run_id, region=run.region, seen=len(images), **counts)


def record_failure(engine: Engine, run: RunInfo, error: str) -> int | None:
    """Record a failed run in its own transaction; the catalog itself is untouched."""
    try:
        with engine.begin() as conn:
            run_id = _start_run(conn, run)
            conn.execute(
                update(run_t)
                .where(run_t.c.id == run_id)
                .values(status="failed", finished_at=utcnow(), error=error[:2000])
            )
            return run_id
    except sa_exc.SQLAlchemyError:
        return None
