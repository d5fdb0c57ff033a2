"""Re-read stored images with today's parsing rules, keeping history as it is."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, insert, select, update

from catalog.pages import version_row
from catalog.records import API_FIELDS, ApiImage
from catalog.store import label_t, scope_t, version_t

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
