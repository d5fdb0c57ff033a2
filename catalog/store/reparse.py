"""Rework what is stored in place: re-read images with today's parsing rules (history kept),
or forget a region with all its history; each under the write lock, in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, insert, select, update

from catalog.config import resolve_target
from catalog.errors import DatabaseError, UsageError, did_you_mean
from catalog.parse.records import API_FIELDS, ApiImage
from catalog.parse.uri import check_region
from catalog.store import db, locks
from catalog.store.rows import version_row
from catalog.store.runs import run_t
from catalog.store.writer import event_t, image_t, label_t, scope_t, version_t


@dataclass(frozen=True)
class Reparsed:
    """What ``db reparse`` did: how many stored image versions read differently, of all."""

    database: str
    changed: int
    total: int


@dataclass(frozen=True)
class Forgotten:
    """What ``db forget-region`` did: the region and how many images it held."""

    database: str
    region: str
    images: int


def reparse(db_option: str | None = None, *, wait: bool = False) -> Reparsed:
    """Re-read every stored image with today's parsing rules."""
    target = resolve_target(db_option, write=True)
    if target.path is not None and not target.path.is_file():
        raise DatabaseError(f"No database at {target.path}; there is nothing to reparse.")
    with (
        locks.write_lock(target, wait=wait, holder="db reparse") as held,
        db.writable(target) as engine,
    ):
        changed, total = reparse_rows(engine, held.confirm)
    return Reparsed(target.display, changed, total)


def forget_region(
    region: str,
    db_option: str | None = None,
    *,
    wait: bool = False,
    ask: Callable[[str, int], bool] | None = None,
) -> Forgotten | None:
    """Delete ``region`` and its whole history under the write lock of the whole catalog. With
    ``ask``, first ask it (region, images), once the lock is held; None when it says no."""
    region = check_region(region)
    target = resolve_target(db_option, write=True)
    if target.path is not None and not target.path.is_file():
        raise DatabaseError(f"No database at {target.path}; there is nothing to forget.")
    with (
        locks.write_lock(target, wait=wait, holder="db forget-region") as held,
        db.writable(target) as engine,
    ):
        count = _region_size(engine, region, target.display)
        if ask is not None and not ask(region, count):
            return None
        return Forgotten(target.display, region, delete_region(engine, region, held.confirm))


def _region_size(engine: Engine, region: str, display: str) -> int:
    """How many images a region holds (removed ones too); refuses a region never held."""
    with engine.connect() as conn:
        known = set(conn.execute(select(run_t.c.region).distinct()).scalars())
        count = conn.execute(
            select(func.count()).select_from(image_t).where(image_t.c.region == region)
        ).scalar_one()
    if region not in known and not count:
        shown = ", ".join(sorted(known)) or "none"
        raise UsageError(
            f"{region} is not in {display}.{did_you_mean(region, sorted(known))} Its "
            f"regions: {shown}."
        )
    return int(count)


# What version_row() derives from an image's fields and labels: recomputed by reparse().
DERIVED = (
    "host", "namespace", "repository", "tag", "digest", "official", "framework",
    "framework_key", "framework_version", "version_key", "version_class", "accelerator",
    "python_version", "cuda_version", "os_version", "components", "build_suffix", "scopes",
    "scope_inferred", "parse_status", "parse_reason",
)  # fmt: skip


def reparse_rows(engine: Engine, confirm: Callable[[], None] | None = None) -> tuple[int, int]:
    """Read every stored image version again with today's rules; (changed, total).

    Parsing improves between releases; stored rows keep what the old rules read until this
    runs. Only derived columns change: API fields, labels, history and events stay as they are.
    ``confirm`` raises if the writer's lock was lost; it is called before the commit.
    """
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
        if confirm is not None:
            confirm()
    return changed, total


def delete_region(engine: Engine, region: str, confirm: Callable[[], None] | None = None) -> int:
    """Delete a region and its whole history (images, versions, labels, scopes, events and
    runs) in one transaction; the number of images it held. ``confirm`` raises if the
    writer's lock was lost; it is called before the commit."""
    versions = select(version_t.c.id).where(version_t.c.region == region)
    with engine.begin() as conn:
        count = conn.execute(
            select(func.count()).select_from(image_t).where(image_t.c.region == region)
        ).scalar_one()
        conn.execute(delete(label_t).where(label_t.c.version_id.in_(versions)))
        conn.execute(delete(scope_t).where(scope_t.c.version_id.in_(versions)))
        images = select(image_t.c.id).where(image_t.c.region == region)
        conn.execute(delete(event_t).where(event_t.c.image_pk.in_(images)))
        conn.execute(delete(version_t).where(version_t.c.region == region))
        conn.execute(delete(image_t).where(image_t.c.region == region))
        conn.execute(delete(run_t).where(run_t.c.region == region))
        if confirm is not None:
            confirm()
    return int(count)
