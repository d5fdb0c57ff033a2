"""Sync history: the runs, what changed between two runs, and every event of one image."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from catalog.config import DIGEST_SOURCE, resolve_target
from catalog.errors import AmbiguousError, NotFoundError, UsageError, did_you_mean
from catalog.parse import PUBLIC_NAMES, times
from catalog.parse.records import API_FIELDS
from catalog.parse.uri import on_network
from catalog.read import statements
from catalog.read.connection import Reader, reader
from catalog.read.filters import require_text

# store.COMPARED_FIELDS, derived here because importing store would pull SQLAlchemy into reads.
COMPARED_FIELDS = tuple(column for column in API_FIELDS.values() if column != "image_id")
KINDS = ("added", "changed", "removed")
STATUSES = ("running", "ok", "failed")
MAX_SHOWN = 5


_HINT = "pai-catalog runs lists them"
_IDENTITY = ("image_id", "image_uri", "framework_name", "framework_version")
_COUNTS = ("pages", "requests", "retries", "seen", "added", "changed", "removed", "restored")


@dataclass(frozen=True)
class Run:
    """One sync or import of one region, as the sync_run table recorded it."""

    run_id: int
    region: str
    source: str
    status: str
    started_at: str
    finished_at: str | None
    seconds: float | None
    pages: int
    requests: int
    retries: int
    seen: int
    added: int
    changed: int
    removed: int
    restored: int
    error: str | None
    detail: str | None


@dataclass(frozen=True)
class Change:
    """One image that differs between two runs, with the fields that differ."""

    kind: str  # "added", "changed" or "removed", as events say
    region: str
    image_id: str
    image_uri: str | None
    framework_name: str | None
    framework_version: str | None
    changed_fields: tuple[str, ...] = ()
    before: Mapping[str, Any] | None = field(default=None, hash=False)
    after: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Event:
    """One addition, change, removal or restoration of an image."""

    event_id: int
    kind: str
    run_id: int
    region: str
    run_started_at: str
    image_id: str
    image_uri: str | None
    framework_name: str | None
    framework_version: str | None
    changed_fields: tuple[str, ...]
    manifest_digest: str | None = None  # for a tag that moved: the digest it moved to


def _run(row: Mapping[str, Any]) -> Run:
    started, finished = times.parse(row["started_at"]), times.parse(row["finished_at"])
    seconds = None
    if started is not None and finished is not None:
        seconds = round((finished - started).total_seconds(), 3)
    counts: dict[str, Any] = {name: int(row[name] or 0) for name in _COUNTS}
    return Run(
        run_id=int(row["id"]),
        started_at=times.iso(started) or "",
        finished_at=times.iso(finished),
        seconds=seconds,
        **{name: row[name] for name in ("region", "source", "status", "error", "detail")},
        **counts,
    )


def _region(value: str) -> str:
    return value.strip().lower()


def _known_region(handle: Reader, region: str) -> None:
    """Refuse a region with no run at all, naming the closest that has some (a typo)."""
    regions = [row["region"] for row in handle.rows(statements.RUN_REGIONS)]
    if region not in regions:
        raise NotFoundError(
            f"No run of region {region!r}.{did_you_mean(region, sorted(regions))} Regions with "
            f"runs: {', '.join(sorted(regions)) or 'none'}."
        )


def _select_runs(
    handle: Reader, limit: int | None = None, *, listings: bool = False, **where: Any
) -> list[Run]:
    """Runs newest first, narrowed by the conditions whose values are not None (and to runs
    that listed images, with ``listings``)."""
    return [_run(row) for row in handle.rows(*statements.runs(limit, listings=listings, **where))]


def runs(
    *,
    region: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    db: str | None = None,
) -> list[Run]:
    """Every sync and import run, newest first."""
    wanted = status.strip().lower() if status is not None else None
    if wanted is not None and wanted not in STATUSES:
        raise UsageError(f"Unknown run status {status!r}; use one of {', '.join(STATUSES)}.")
    if limit is not None and not 1 <= limit < 2**63:
        raise UsageError(f"The limit must be a positive number of runs, not {limit}.")
    handle = reader(resolve_target(db, own=True))
    found = _select_runs(handle, limit, region=region and _region(region), status=wanted)
    if region and not found:
        _known_region(handle, _region(region))
    return found


def _successful(handle: Reader, run_id: int) -> Run:
    found = _select_runs(handle, id=run_id) if 0 < run_id < 2**63 else []
    if not found:
        raise NotFoundError(f"There is no run {run_id}; {_HINT}.")
    if found[0].status == "failed":
        # The error's first clause is enough to recognise the run; runs shows all of it.
        error = found[0].error or "no reason recorded"
        reason = error.split("; ")[0].split(". ")[0].rstrip(".")[:120]
        raise UsageError(f"Run {run_id} failed ({reason}); diff compares successful runs: {_HINT}.")
    if found[0].source == DIGEST_SOURCE:
        raise UsageError(
            f"Run {run_id} asked registries for digests and listed no images; diff compares "
            f"listings: {_HINT}."
        )
    if found[0].status != "ok":
        raise UsageError(
            f"Run {run_id} is {found[0].status}; diff compares successful runs: {_HINT}."
        )
    return found[0]


def _default_pairs(handle: Reader, region: str | None) -> list[tuple[Run, Run]]:
    """Each region's last two successful runs; a region with fewer is skipped unless asked for."""
    if region is not None:
        last = _select_runs(handle, 2, region=region, status="ok", listings=True)
        if len(last) < 2:
            if not last:
                _known_region(handle, region)
            count = "only one successful run" if last else "no successful runs"
            raise NotFoundError(f"{region} has {count}; diff needs two: {_HINT}.")
        return [(last[1], last[0])]
    names = [row["region"] for row in handle.rows(statements.RUN_REGIONS)]
    pairs = [
        _select_runs(handle, 2, region=name, status="ok", listings=True) for name in sorted(names)
    ]
    return [(last[1], last[0]) for last in pairs if len(last) == 2]


def _pair(
    handle: Reader, run_a: int | None, run_b: int | None, region: str | None
) -> list[tuple[Run, Run]]:
    if run_a is not None and run_b is not None:
        a, b = _successful(handle, run_a), _successful(handle, run_b)
    elif run_b is not None:
        b = _successful(handle, run_b)
        earlier = _select_runs(
            handle, 1, region=b.region, status="ok", listings=True, before=b.run_id
        )
        if not earlier:
            raise NotFoundError(
                f"Run {b.run_id} is the first successful run of {b.region}; "
                f"there is nothing earlier to compare it with: {_HINT}."
            )
        a = earlier[0]
    elif run_a is not None:
        a = _successful(handle, run_a)
        later = _select_runs(handle, 1, region=a.region, status="ok", listings=True, after=a.run_id)
        if not later:
            raise NotFoundError(
                f"Run {a.run_id} is the latest successful run of {a.region}; "
                f"give a later run to compare it with: {_HINT}."
            )
        b = later[0]
    else:
        return _default_pairs(handle, region)
    if a.region != b.region:
        raise UsageError(
            f"Run {a.run_id} is of {a.region} and run {b.run_id} of {b.region}; "
            f"diff compares two runs of one region: {_HINT}."
        )
    if region is not None and a.region != region:
        raise UsageError(f"Runs {a.run_id} and {b.run_id} are of {a.region}, not {region}.")
    if a.run_id >= b.run_id:
        raise UsageError(
            f"Run {a.run_id} is not earlier than run {b.run_id}; give the earlier run first."
        )
    return [(a, b)]


def _state(handle: Reader, region: str, run_id: int) -> dict[int, dict[str, Any]]:
    rows = handle.rows(*statements.state(COMPARED_FIELDS, region, run_id))
    return {row["image_pk"]: row for row in rows}


def _labels(handle: Reader, region: str, a: int, b: int) -> dict[int, dict[str, str | None]]:
    """Labels of the versions valid at run a or run b; those valid all along cannot differ."""
    rows = handle.rows(*statements.changed_labels(region, a, b))
    found: dict[int, dict[str, str | None]] = {}
    for row in rows:
        found.setdefault(row["version_id"], {})[row["key"]] = row["value"]
    return {version: dict(sorted(labels.items())) for version, labels in found.items()}


def _change(kind: str, region: str, row: Mapping[str, Any], **rest: Any) -> Change:
    return Change(kind, region, **{name: row[name] for name in _IDENTITY}, **rest)


def _compare(handle: Reader, a: Run, b: Run) -> list[Change]:
    """Net differences only: an image that came and went between the runs is not listed."""
    region = a.region
    old, new = _state(handle, region, a.run_id), _state(handle, region, b.run_id)
    changes = [_change("added", region, row) for pk, row in new.items() if pk not in old]
    changes += [_change("removed", region, row) for pk, row in old.items() if pk not in new]
    # A new version id may carry the same content, e.g. after a removal and a restoration.
    moved = [(old[pk], new[pk]) for pk in new if pk in old and old[pk]["id"] != new[pk]["id"]]
    labels = _labels(handle, region, a.run_id, b.run_id) if moved else {}
    for before, after in moved:
        columns = [name for name in COMPARED_FIELDS if before[name] != after[name]]
        names = [PUBLIC_NAMES.get(name, name) for name in columns]
        was = {PUBLIC_NAMES.get(name, name): before[name] for name in columns}
        now = {PUBLIC_NAMES.get(name, name): after[name] for name in columns}
        old_labels, new_labels = labels.get(before["id"], {}), labels.get(after["id"], {})
        if old_labels != new_labels:
            names.append("labels")
            was["labels"], now["labels"] = old_labels, new_labels
        if names:
            changes.append(
                _change(
                    "changed", region, after, changed_fields=tuple(names), before=was, after=now
                )
            )
    return changes


def diff(
    run_a: int | None = None,
    run_b: int | None = None,
    *,
    region: str | None = None,
    db: str | None = None,
) -> list[Change]:
    """What differs between the catalog after run A and after the later run B.

    By default, each region's last two successful runs; with only run B, the successful run
    of its region before it; with only run A, the latest successful run of its region.
    """
    handle = reader(resolve_target(db))
    pairs = _pair(handle, run_a, run_b, _region(region) if region else None)
    changes = [change for a, b in pairs for change in _compare(handle, a, b)]
    return sorted(
        changes,
        key=lambda c: (
            c.region,
            KINDS.index(c.kind),
            c.image_uri is None,
            c.image_uri or "",
            c.image_id,
        ),
    )


def image_history(
    uri_or_id: str, *, region: str | None = None, db: str | None = None
) -> list[Event]:
    """Every event of the image with this URI (in any of its versions, in either host form) or
    ImageId, oldest first."""
    require_text("uri_or_id", uri_or_id)
    require_text("region", region)
    needle = (uri_or_id or "").strip()
    if not needle:
        raise UsageError("Give an image URI or ImageId, such as one pai-catalog list shows.")
    # A URI in either host form, as show takes it.
    forms = (needle, on_network(needle, "vpc"), on_network(needle, "public"))
    rows = reader(resolve_target(db)).rows(*statements.events_of(*forms))
    regions = sorted({row["region"] for row in rows})
    if region is not None:
        wanted = _region(region)
        rows = [row for row in rows if row["region"] == wanted]
        if not rows and regions:
            raise NotFoundError(
                f"{needle!r} has no history in {wanted}; it is in {_listed(regions)}."
            )
    elif len(regions) > 1:
        raise AmbiguousError(
            f"{needle!r} is in {len(regions)} regions ({_listed(regions)}); "
            "choose one with region= (--region)."
        )
    if not rows:
        raise NotFoundError(
            f"No image with URI or ImageId {needle!r} in the catalog's history; "
            "pai-catalog list --include-removed shows the known images."
        )
    return [
        Event(
            int(row["event_id"]),
            row["kind"],
            int(row["run_id"]),
            row["region"],
            times.iso(row["run_started_at"]) or "",
            **{name: row[name] for name in _IDENTITY},
            changed_fields=tuple(json.loads(row["changed_fields"] or "[]")),
            manifest_digest=row["manifest_digest"],
        )
        for row in rows
    ]


def _listed(values: list[str]) -> str:
    return ", ".join(values[:MAX_SHOWN]) + (", ..." if len(values) > MAX_SHOWN else "")
