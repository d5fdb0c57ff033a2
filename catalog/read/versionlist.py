"""A framework's versions as a person reads them: one line per semantic version, with the
spellings and build variants it covers, where and when it appeared."""

from __future__ import annotations

from dataclasses import dataclass

from catalog.parse import times, versions
from catalog.read import statements
from catalog.read.connection import Reader
from catalog.read.filters import Filters


@dataclass(frozen=True)
class VersionGroup:
    """One version: ``version`` as it is best written, the other ``spellings`` of it in the
    catalog (2.1 beside 2.1.0, build variants such as 1.12PAI), the first time the catalog
    saw any of them, and the regions and accelerators they are in."""

    version: str
    spellings: tuple[str, ...]
    first_seen: str | None
    regions: tuple[str, ...]
    accelerators: tuple[str, ...]


def version_groups(db: Reader, f: Filters) -> list[VersionGroup]:
    """The versions of the images ``f`` selects, highest first (prereleases after their
    release, unparseable ones last); semantically equal spellings are one version."""
    rows = db.rows(*statements.versions_of(f))
    found: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        found.setdefault(row["key"], []).append(row)
    return [_group(found[key]) for key in sorted(found, reverse=True)]


def _group(rows: list[dict[str, object]]) -> VersionGroup:
    texts = sorted({str(row["text"]) for row in rows})
    plain = [t for t in texts if (v := versions.parse_version(t)) is None or v.build is None]
    # The fullest plain spelling (2.1.0 over 2.1); with only build variants (1.8PAI,
    # 0.13.0rc2.a8ec486), what they are variants of.
    best = max(plain, key=lambda t: (len(t), t)) if plain else _without_build(texts[0])
    moments = [m for row in rows if (m := times.parse(row["first"])) is not None]
    return VersionGroup(
        version=best,
        spellings=tuple(t for t in texts if t != best),
        first_seen=times.iso(min(moments)) if moments else None,
        regions=tuple(sorted({str(row["region"]) for row in rows})),
        accelerators=tuple(sorted({str(row["accelerator"]) for row in rows if row["accelerator"]})),
    )


def _without_build(text: str) -> str:
    """1.8 of 1.8PAI, 0.13.0rc2 of 0.13.0rc2.a8ec486.20260305pai: a prerelease stays one."""
    parsed = versions.parse_version(text)
    if parsed is None or parsed.build is None:
        return text
    return text[: len(text) - len(parsed.build)].rstrip(".-_+").lstrip("vV") or text
