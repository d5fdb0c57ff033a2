"""When each version of a framework was in each region: first seen, changed, removed."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from catalog.config import resolve_target
from catalog.errors import NotFoundError, UsageError
from catalog.parse import times, versions
from catalog.read import statements
from catalog.read.connection import Reader, catalog_age, reader
from catalog.read.explain import explain_missing, unknown_name
from catalog.read.filters import Filters, describe, make_filters, require_text
from catalog.read.versionlist import VersionGroup, version_groups

# Events that mark a bar, in the order marks at one time are listed.
MARK_KINDS = ("added", "changed", "removed", "restored")


@dataclass(frozen=True)
class Mark:
    """Something that happened to one image of a span: ``added`` (an image that joined the
    version in the region after its first sighting), ``changed`` (its fields, labels, or the
    digest its tag points at), ``removed`` or ``restored``; at the time of the run that saw it."""

    kind: str
    at: str
    image_id: str
    changed_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Span:
    """One version of a framework in one region, from the catalog's first sighting of any of
    its images there to when the last of them left it, removed or relabelled (``removed_at``;
    None while one is listed); each image counts under the version it had at the time.
    ``end`` is where a bar ends: the removal, else the region's last successful listing (or a
    later event of the span, from a digests run): never today, so the same catalog gives the
    same spans. ``spellings`` are the version's spellings in the region;
    ``images`` counts its images there ever, ``live_images`` those listed now; ``gaps`` are
    the times (from, to) between when none of them was listed, before one came back."""

    framework_name: str
    version: str
    region: str
    first_seen: str
    removed_at: str | None
    end: str
    images: int
    live_images: int
    spellings: tuple[str, ...]
    gaps: tuple[tuple[str, str], ...]
    marks: tuple[Mark, ...]


def timeline(
    framework_name: str | None = None,
    *,
    image_scope: str | None = None,
    accelerator_type: str | None = None,
    region: str | None = None,
    db: str | None = None,
) -> list[Span]:
    """A span per version (grouped as ``list_versions`` groups them: one per semantic
    version, in its fullest plain spelling) and region, removed images included: by
    framework, highest version first, then by region. Every region unless ``region`` is
    given; an image belongs to the version and filters of its newest state."""
    for name, value in (
        ("framework_name", framework_name), ("image_scope", image_scope),
        ("accelerator_type", accelerator_type), ("region", region), ("db", db),
    ):  # fmt: skip
        require_text(name, value)
    if framework_name is not None and not framework_name.strip():
        raise UsageError("Give a framework name, such as PyTorch, or none for every framework.")
    f = make_filters(
        framework_name, accelerator_type, image_scope, region, None, None, None, True, None
    )
    handle = reader(resolve_target(db))
    rows = handle.rows(*statements.timeline_states(replace(f, all_states=True)))
    if not rows:
        raise _nothing(handle, f, framework_name)
    events: dict[int, list[dict[str, Any]]] = {}  # by state
    for event in handle.rows(*statements.timeline_events(replace(f, all_states=True))):
        events.setdefault(int(event["version_id"]), []).append(event)
    last = {
        row["region"]: times.parse(row["last_listing"])
        for row in handle.rows(statements.LAST_LISTINGS)
    }
    spans = []
    for framework_key in sorted({str(row["framework_key"]) for row in rows}):
        mine = [row for row in rows if row["framework_key"] == framework_key]
        groups = version_groups(handle, replace(f, framework_key=framework_key, all_states=True))
        # version_groups reads the same images, so every spelling here is in one group.
        rank = {text: n for n, group in enumerate(groups) for text in _texts(group)}
        framework = min(str(row["framework"]) for row in mine)
        found: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for row in mine:
            found.setdefault((rank[str(row["text"])], str(row["region"])), []).append(row)
        for n, name in sorted(found):
            here = found[n, name]
            spans.append(_span(framework, groups[n].version, name, here, events, last.get(name)))
    return spans


def _texts(group: VersionGroup) -> tuple[str, ...]:
    return (group.version, *group.spellings)


def _nothing(handle: Reader, f: Filters, framework_name: str | None) -> Exception:
    """Why no image was found: an unknown name, with the closest known one, or no image."""
    if framework_name is not None:
        return explain_missing(handle, f, framework_name, versions.parse_request("latest"))
    unknown = unknown_name(handle, f, None)
    return unknown or NotFoundError(f"No image {describe(f)} ({catalog_age(handle)}).")


def _span(
    framework: str,
    version: str,
    region: str,
    rows: list[dict[str, Any]],
    events: dict[int, list[dict[str, Any]]],
    last_listing: datetime | None,
) -> Span:
    """A version's span in a region from the states of its images there: an image relabelled
    to another version (or accelerator) leaves this span when its state ends."""
    periods = sorted(
        (
            (
                _moment(row["valid_from"]),
                None if row["valid_to"] is None else _moment(row["valid_to"]),
            )
            for row in rows
        ),
        key=lambda period: period[0],
    )
    first = periods[0][0]
    live = {int(row["image_pk"]) for row in rows if row["valid_to"] is None}
    removed_at = None if live else max(stop for _, stop in periods if stop is not None)
    marks = sorted(
        (
            (_moment(event["at"]), MARK_KINDS.index(event["kind"]), str(row["image_id"]), event)
            for row in rows
            for event in events.get(int(row["id"]), [])
            if event["kind"] in MARK_KINDS
            and (event["kind"] != "added" or _moment(event["at"]) > first)
        ),
        key=lambda item: item[:3],
    )
    end = removed_at or max([first, *([last_listing] if last_listing else [])])
    if removed_at is None and marks:
        end = max(end, marks[-1][0])
    return Span(
        framework_name=framework,
        version=version,
        region=region,
        first_seen=_iso(first),
        removed_at=None if removed_at is None else _iso(removed_at),
        end=_iso(end),
        images=len({int(row["image_pk"]) for row in rows}),
        live_images=len(live),
        spellings=tuple(sorted({str(row["text"]) for row in rows})),
        gaps=tuple((_iso(start), _iso(stop)) for start, stop in _gaps(periods)),
        marks=tuple(
            Mark(
                event["kind"],
                _iso(moment),
                image_id,
                tuple(json.loads(event["changed_fields"] or "[]")),
            )
            for moment, _, image_id, event in marks
        ),
    )


def _gaps(periods: list[tuple[datetime, datetime | None]]) -> list[tuple[datetime, datetime]]:
    """When no state of a span was valid, between its first and its last: ``periods`` are
    (from, to) sorted by from, to None while valid now."""
    gaps: list[tuple[datetime, datetime]] = []
    reach = periods[0][1]
    for start, stop in periods[1:]:
        if reach is None:
            break
        if start > reach:
            gaps.append((reach, start))
        reach = None if stop is None else max(reach, stop)
    return gaps


def _moment(value: Any) -> datetime:
    moment = times.parse(value)
    if moment is None:  # the columns read here are never empty where they are read
        raise ValueError("a time the catalog always records is missing")
    return moment


def _iso(moment: datetime) -> str:
    return times.iso(moment) or ""
