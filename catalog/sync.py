"""Bring listings into the catalog: import files now, the live API crawl later, one store path."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from catalog import db, records, store
from catalog.config import resolve_target
from catalog.errors import UsageError

_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


def check_region(region: str) -> str:
    """A region id such as cn-hangzhou, stripped and lower-cased."""
    value = region.strip().lower()
    if not _REGION.match(value):
        raise UsageError(
            f"{region!r} is not a region id; write it like cn-hangzhou or ap-southeast-1."
        )
    return value


def import_files(
    paths: Sequence[Path], region: str, *, db_option: str | None = None
) -> store.RunStats:
    """Import ListImages bodies as one complete listing of ``region`` (one run, one transaction)."""
    region = check_region(region)
    images = records.load_files(paths)
    target = resolve_target(db_option, write=True)
    with db.writable(target) as engine:
        detail = ", ".join(path.name for path in paths)
        return store.apply_listing(engine, region, images, source="import", detail=detail)
