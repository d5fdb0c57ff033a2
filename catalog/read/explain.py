"""Why a request found nothing: a name the catalog does not hold (with the closest it does),
or no image for these filters (with what there is instead)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from catalog.account import region_advice
from catalog.config import spelled
from catalog.errors import (
    AmbiguousError,
    CatalogError,
    NotFoundError,
    UnsupportedError,
    did_you_mean,
    quoted,
)
from catalog.parse import times, versions
from catalog.read import statements
from catalog.read.connection import Reader, catalog_age
from catalog.read.filters import Filters, describe
from catalog.read.versionlist import version_groups

MAX_LISTED = 25  # versions an error lists


def _known_frameworks(db: Reader, f: Filters) -> list[str]:
    state = Filters(include_removed=f.include_removed, as_of=f.as_of)
    return [row["value"] for row in db.rows(*statements.distinct("framework", state))]


def _distinct(db: Reader, column: str, f: Filters | None = None) -> list[str]:
    """The values of an image_version column (region, accelerator) among the images ``f``
    selects, or among all; sorted."""
    rows = db.rows(*statements.distinct(column, f or Filters(include_removed=True)))
    return [row["value"] for row in rows]


def before_history(db: Reader, f: Filters) -> NotFoundError | None:
    """An as-of time before the catalog's first successful run, said as such."""
    if f.as_of is None:
        return None
    first = times.parse(db.scalar(statements.FIRST_SYNC))
    if first is not None and f.as_of >= first:
        return None
    since = f"starts at {times.iso(first)}" if first else "holds no successful run"
    return NotFoundError(
        f"The catalog's history {since}; {times.iso(f.as_of)} "
        f"({spelled('as_of', '--as-of')}) is before it (a date alone is its 00:00 UTC)."
    )


def unknown_name(db: Reader, f: Filters, framework_name: str | None) -> CatalogError | None:
    """A framework, region or accelerator the catalog does not hold at all, with the closest
    name it does: a typo, not an empty answer. A time before the catalog's history began is
    said as such, not as names it did not hold yet."""
    early = before_history(db, f)
    if early is not None:
        return early
    if framework_name is not None:
        known = _known_frameworks(db, f)
        if f.framework_key not in {name.lower() for name in known} and not f.include_removed:
            gone = _known_frameworks(db, replace(f, include_removed=True))
            if f.framework_key in {name.lower() for name in gone}:
                option = spelled("include_removed", "--include-removed")
                return NotFoundError(
                    f"Every {framework_name} image has left the API's listing; {option} "
                    f"shows them ({catalog_age(db)})."
                )
        if f.framework_key not in {name.lower() for name in known}:
            # As of a time, the catalog may just not have held it yet: nothing found, then.
            kind = NotFoundError if f.as_of is not None else UnsupportedError
            return kind(
                f"Unknown framework {quoted(framework_name)}.{did_you_mean(framework_name, known)} "
                f"Known frameworks: {', '.join(known) or 'none'} ({catalog_age(db)})."
            )
    if f.region is not None:
        regions = _distinct(db, "region")
        if f.region not in regions:
            return NotFoundError(
                f"No image in region {quoted(f.region)}.{did_you_mean(f.region, regions)} "
                f"Regions in the catalog: {', '.join(regions) or 'none'} ({catalog_age(db)})."
            )
    if f.accelerator is not None:
        accelerators = _distinct(db, "accelerator")
        if f.accelerator not in accelerators:
            return UnsupportedError(
                f"Unknown accelerator {quoted(f.accelerator)}; the catalog knows "
                f"{', '.join(accelerators) or 'none'} ({catalog_age(db)})."
            )
    return None


def explain_missing(
    db: Reader, f: Filters, framework_name: str, request: versions.VersionRequest
) -> CatalogError:
    """Why nothing matched: a name the catalog does not know (a ValueError, as the PAI SDK
    raises for an unsupported framework), or no image for these filters (a RuntimeError),
    saying which accelerators the framework has when the one asked for has none."""
    unknown = unknown_name(db, f, framework_name)
    if unknown is not None:
        return unknown
    age = catalog_age(db)
    available = [group.version for group in version_groups(db, f)]
    where = describe(f)
    if not available:
        others = _distinct(db, "accelerator", replace(f, accelerator=None))
        hint = ""
        if f.accelerator is not None and others:
            option = spelled("accelerator_type", "--accelerator")
            hint = f"; it has images for {', '.join(others)} ({option})"
        return NotFoundError(f"No {framework_name} image {where}{hint} ({age}).")
    shown = ", ".join(available[:MAX_LISTED])
    more = f" and {len(available) - MAX_LISTED} more" if len(available) > MAX_LISTED else ""
    return NotFoundError(
        f"No {framework_name} version matches {request.text!r} {where}; available versions: "
        f"{shown}{more} ({age})."
    )


def check_one_region(
    db: Reader,
    f: Filters,
    framework_name: str,
    request: versions.VersionRequest,
    clause: str,
    params: dict[str, Any],
) -> None:
    """Refuse a request whose candidates lie in several regions: an answer from any one of
    them would be an image the caller may not be able to pull, and which one wins would
    change as versions roll out."""
    rows = db.rows(*statements.regions_of(f, clause, params))
    if request.kind == "range":
        rows = [row for row in rows if request.matches(row["framework_version"])]
    regions = sorted({row["region"] for row in rows})
    if len(regions) > 1:
        shown = ", ".join(regions[:8]) + (
            f" and {len(regions) - 8} more" if len(regions) > 8 else ""
        )
        raise AmbiguousError(
            f"{framework_name} images matching {request.text!r} {describe(f)} are in "
            f"{len(regions)} regions ({shown}); {region_advice()} ({catalog_age(db)})."
        )
