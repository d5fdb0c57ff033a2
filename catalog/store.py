"""All writes: apply one complete listing of a region as one run, in one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy import exc as sa_exc

from catalog import tags, versions
from catalog.config import utcnow
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


BATCH = 2000  # rows per INSERT or UPDATE batch
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


class _Old(NamedTuple):
    """What a run needs to know of an image already in the catalog."""

    image_pk: int
    removed_run_id: int | None
    version_id: int
    content_hash: str


def _current(conn: Connection, region: str) -> dict[str, _Old]:
    """The latest version of every image of the region, live or removed, by image key."""
    query = (
        select(
            image_t.c.image_id,
            image_t.c.id,
            image_t.c.removed_run_id,
            version_t.c.id,
            version_t.c.content_hash,
        )
        .join(version_t, version_t.c.image_pk == image_t.c.id)
        .where(image_t.c.region == region, version_t.c.is_latest.is_(True))
    )
    return {row[0]: _Old(*row[1:]) for row in conn.execute(query)}


def _chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _old_states(
    conn: Connection, version_ids: Sequence[int]
) -> dict[int, tuple[dict[str, Any], dict[str, str | None]]]:
    """Compared fields and labels of old versions, read in batches, to name what changed."""
    states: dict[int, tuple[dict[str, Any], dict[str, str | None]]] = {}
    columns = [version_t.c[name] for name in COMPARED_FIELDS]
    for chunk in _chunks(version_ids):
        for row in conn.execute(select(version_t.c.id, *columns).where(version_t.c.id.in_(chunk))):
            states[row[0]] = (dict(zip(COMPARED_FIELDS, row[1:], strict=True)), {})
        query = select(label_t.c.version_id, label_t.c.key, label_t.c.value)
        for vid, key, value in conn.execute(query.where(label_t.c.version_id.in_(chunk))):
            states[vid][1][key] = value
    return states


def _changed_fields(
    state: tuple[dict[str, Any], dict[str, str | None]], image: ApiImage
) -> list[str]:
    fields, labels = state
    names = [name for name in COMPARED_FIELDS if fields[name] != image.fields.get(name)]
    if labels != dict(image.labels):
        names.append("labels")
    return names


def _insert_returning_ids(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows in batches; their new ids, in the rows' order."""
    if conn.dialect.name == "sqlite":
        # The run's first insert already took SQLite's single write lock, so numbering the rows
        # here is safe, and plain executemany is far faster than RETURNING row by row.
        start = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one() + 1
        for offset, row in enumerate(rows):
            row["id"] = start + offset
        _insert_many(conn, table, rows)
        return list(range(start, start + len(rows)))
    ids: list[int] = []
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    for chunk in _chunks(rows):
        ids.extend(row[0] for row in conn.execute(statement, list(chunk)))
    return ids


def _insert_many(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    for chunk in _chunks(rows):
        conn.execute(insert(table), list(chunk))


def _last_ok_run(conn: Connection, region: str, before: int) -> int | None:
    query = select(run_t.c.id).where(
        run_t.c.region == region, run_t.c.status == "ok", run_t.c.id < before
    )
    return conn.execute(query.order_by(run_t.c.id.desc()).limit(1)).scalar()


def _check_removals(region: str, current: dict[str, _Old], images: Sequence[ApiImage]) -> None:
    """Refuse a listing that would remove more than 20% (and more than 5) of the live images."""
    live = [key for key, old in current.items() if old.removed_run_id is None]
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
    """Compare the listing with the catalog and write the difference, in batches."""
    now = conn.execute(select(run_t.c.started_at).where(run_t.c.id == run_id)).scalar_one()
    current = _current(conn, region)
    if not allow_mass_removal:
        _check_removals(region, current, images)
    added: list[ApiImage] = []
    updated: list[tuple[ApiImage, _Old]] = []  # changed or restored
    for image in images:
        old = current.pop(image.key, None)
        if old is None:
            added.append(image)
        elif old.removed_run_id is not None or old.content_hash != image.content_hash:
            updated.append((image, old))
    gone = [old for old in current.values() if old.removed_run_id is None]
    del current

    new_pks = _insert_returning_ids(
        conn,
        image_t,
        [{"region": region, "image_id": i.key, "first_seen_run_id": run_id} for i in added],
    )
    states = _old_states(
        conn, [old.version_id for image, old in updated if old.content_hash != image.content_hash]
    )
    # Every old version that a new one replaces, or that is removed, ends with this run.
    ending = [old.version_id for _, old in updated if old.removed_run_id is None]
    ending += [old.version_id for old in gone]
    close = (
        update(version_t)
        .where(version_t.c.id == bindparam("vid"))
        .values(valid_to=now, valid_to_run_id=run_id)
    )
    for chunk in _chunks(ending):
        conn.execute(close, [{"vid": vid} for vid in chunk])
    not_latest = update(version_t).where(version_t.c.id == bindparam("vid")).values(is_latest=False)
    for chunk in _chunks(updated):
        conn.execute(not_latest, [{"vid": old.version_id} for _, old in chunk])

    owners = new_pks + [old.image_pk for _, old in updated]
    fresh = added + [image for image, _ in updated]
    version_ids: list[int] = []
    # One batch at a time, so a large first sync never holds every row it writes.
    for start in range(0, len(fresh), BATCH):
        batch = fresh[start : start + BATCH]
        rows = [version_row(image, region) for image in batch]
        for row, image_pk in zip(rows, owners[start : start + BATCH], strict=True):
            row.update(image_pk=image_pk, valid_from_run_id=run_id, valid_from=now, is_latest=True)
        ids = _insert_returning_ids(conn, version_t, rows)
        labels, scopes = [], []
        for image, row, vid in zip(batch, rows, ids, strict=True):
            labels += [{"version_id": vid, "key": k, "value": v} for k, v in image.labels]
            scopes += [
                {"version_id": vid, "scope": s} for s in (row["scopes"] or "").split(",") if s
            ]
        _insert_many(conn, label_t, labels)
        _insert_many(conn, scope_t, scopes)
        version_ids += ids

    restored = [old.image_pk for _, old in updated if old.removed_run_id is not None]
    revive = update(image_t).where(image_t.c.id == bindparam("pk"))
    for chunk in _chunks(restored):
        conn.execute(
            revive.values(removed_run_id=None, last_seen_run_id=None), [{"pk": pk} for pk in chunk]
        )
    last_ok = _last_ok_run(conn, region, run_id) if gone else None
    for chunk in _chunks(gone):
        conn.execute(
            revive.values(removed_run_id=run_id, last_seen_run_id=last_ok),
            [{"pk": old.image_pk} for old in chunk],
        )

    events = [
        {
            "run_id": run_id,
            "image_pk": pk,
            "version_id": vid,
            "kind": "added",
            "changed_fields": None,
        }
        for pk, vid in zip(new_pks, version_ids, strict=False)
    ]
    counts = {"added": len(added), "changed": 0, "removed": len(gone), "restored": 0}
    for (image, old), vid in zip(updated, version_ids[len(added) :], strict=True):
        kind = "restored" if old.removed_run_id is not None else "changed"
        counts[kind] += 1
        fields = _changed_fields(states[old.version_id], image) if old.version_id in states else []
        events.append(
            {
                "run_id": run_id,
                "image_pk": old.image_pk,
                "version_id": vid,
                "kind": kind,
                "changed_fields": json.dumps(fields) if fields else None,
            }
        )
    events += [
        {"run_id": run_id, "image_pk": o.image_pk, "version_id": o.version_id, "kind": "removed",
         "changed_fields": None}
        for o in gone
    ]  # fmt: skip
    _insert_many(conn, event_t, events)
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


# What version_row() derives from an image's fields and labels: recomputed by reparse().
DERIVED = (
    "host", "namespace", "repository", "tag", "digest", "official", "framework",
    "framework_key", "framework_version", "version_key", "version_class", "accelerator",
    "python_version", "cuda_version", "os_version", "components", "build_suffix", "scopes",
    "scope_inferred", "parse_status", "parse_reason",
)  # fmt: skip


def reparse(engine: Engine) -> tuple[int, int]:
    """Read every stored image version again with today's rules; (changed, total).

    Parsing improves between releases; stored rows keep what the old rules read until this
    runs. Only derived columns change: API fields, labels, history and events stay as they are.
    """
    from catalog.records import API_FIELDS

    fields = list(API_FIELDS.values())
    changed = total = 0
    with engine.begin() as conn:
        rows = conn.execute(
            select(
                version_t.c.id, version_t.c.region, *[version_t.c[n] for n in (*fields, *DERIVED)]
            )
        ).all()
        labels: dict[int, list[tuple[str, str | None]]] = {}
        for vid, key, value in conn.execute(
            select(label_t.c.version_id, label_t.c.key, label_t.c.value)
        ):
            labels.setdefault(vid, []).append((key, value))
        for row in rows:
            total += 1
            stored = row._mapping
            image = ApiImage(
                key=stored["image_id"],
                fields={n: stored[n] for n in fields},
                labels=tuple(labels.get(row.id, ())),
            )
            fresh = version_row(image, row.region)
            update_values = {n: fresh[n] for n in DERIVED if fresh[n] != stored[n]}
            if not update_values:
                continue
            changed += 1
            conn.execute(update(version_t).where(version_t.c.id == row.id).values(**update_values))
            if "scopes" in update_values:
                conn.execute(scope_t.delete().where(scope_t.c.version_id == row.id))
                scopes = [s for s in (fresh["scopes"] or "").split(",") if s]
                if scopes:
                    conn.execute(
                        insert(scope_t), [{"version_id": row.id, "scope": s} for s in scopes]
                    )
    return changed, total
