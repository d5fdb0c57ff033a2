"""Rework what is stored in place: re-read images with today's parsing rules (history kept),
or forget a region with all its history."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, delete, func, insert, select, update

from catalog.parse.records import API_FIELDS, ApiImage
from catalog.store.rows import version_row
from catalog.store.runs import run_t
from catalog.store.writer import event_t, image_t, label_t, scope_t, version_t

# What version_row() derives from an image's fields and labels: recomputed by reparse().
DERIVED = (
    "host", "namespace", "repository", "tag", "digest", "official", "framework",
    "framework_key", "framework_version", "version_key", "version_class", "accelerator",
    "python_version", "cuda_version", "os_version", "components", "build_suffix", "scopes",
    "scope_inferred", "parse_status", "parse_reason",
)  # fmt: skip


def reparse(engine: Engine, confirm: Callable[[], None] | None = None) -> tuple[int, int]:
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


def forget_region(engine: Engine, region: str, confirm: Callable[[], None] | None = None) -> int:
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
