"""All reads: retrieve one image, list images and versions, show one image; no network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime
from os import PathLike, fspath
from typing import Any

from catalog.account import BoundRegion, default_region
from catalog.config import resolve_target, spelled
from catalog.errors import (
    AmbiguousError,
    CatalogError,
    NotFoundError,
    UsageError,
)
from catalog.parse import versions
from catalog.parse.uri import on_network
from catalog.read import statements
from catalog.read.connection import Reader, catalog_age, reader
from catalog.read.explain import before_history, check_one_region, explain_missing, unknown_name
from catalog.read.filters import (
    Filters,
    build_of,
    check_platform,
    make_filters,
    requested_build,
    require_text,
    version_clause,
)
from catalog.read.imageinfo import ImageInfo, image_info, mirror_of, network_of, pulled_from
from catalog.read.versionlist import VersionGroup, version_groups

# A warm retrieve() answers from here in 7 us, where running the query takes 52-55 us
# (scripts/bench.py, 1k and 100k images).
MAX_REMEMBERED = 4096
_ANSWERS: dict[tuple[Any, ...], tuple[tuple[int, int], ImageInfo]] = {}


def _select(
    db: Reader,
    f: Filters,
    extra: str = "",
    params: dict[str, Any] | None = None,
    limit: int | None = None,
    labels: bool = False,
    order: str = statements.ORDER,
) -> list[dict[str, Any]]:
    return db.rows(
        *statements.answers(f, db.dialect, extra, params, limit=limit, labels=labels, order=order)
    )


# Arguments that, given, must say something (an empty --region is no region), with the advice.
_NOT_EMPTY = {
    "accelerator_type": "give CPU, GPU or another chip type, or any",
    "region": "give a region id such as cn-hangzhou, or any",
    "python_version": "give a version such as 3.10, or leave it out",
    "cuda_version": "give a version such as 12.1, or leave it out",
    "os": "give an OS such as ubuntu22.04, or leave it out",
}
_OPTIONS = {"accelerator_type": "--accelerator", "python_version": "--python",
            "cuda_version": "--cuda"}  # fmt: skip


def _checked(
    texts: Mapping[str, object], as_of: object, db: object
) -> tuple[datetime | str | None, str | None]:
    """Refuse arguments of the wrong type with a ValueError before anything hashes or strips
    them; a date (not a time) as_of is its midnight UTC, and a path-like db its path."""
    for name, value in texts.items():
        require_text(name, value)
        if name in _NOT_EMPTY and value is not None and not str(value).strip():
            raise UsageError(f"{spelled(name, _OPTIONS.get(name))} is empty; {_NOT_EMPTY[name]}.")
    if isinstance(as_of, date) and not isinstance(as_of, datetime):
        as_of = datetime(as_of.year, as_of.month, as_of.day)
    elif as_of is not None and not isinstance(as_of, (datetime, str)):
        raise UsageError(f"as_of must be a date, a time or ISO 8601 text, not {as_of!r}.")
    if isinstance(db, PathLike):
        db = fspath(db)
    if db is not None and not isinstance(db, str):
        raise UsageError(f"db must be a file path or an SQLAlchemy URL, not {db!r}.")
    return as_of, db


def retrieve(
    framework_name: str,
    framework_version: str = "latest",
    accelerator_type: str = "CPU",
    image_scope: str = "training",
    session: Any = None,
    *,
    region: str | None = None,
    python_version: str | None = None,
    cuda_version: str | None = None,
    os: str | None = None,
    as_of: datetime | str | None = None,
    endpoint: str | None = None,
    mirror: str | None = None,
    platform: str | None = None,
    pin: bool = False,
    db: str | None = None,
) -> ImageInfo:
    """The best image for a framework and version request, like the PAI SDK's ``retrieve``,
    with the same arguments in the same order; ``session`` is accepted and ignored (the
    catalog needs no session, no network and no credentials).

    Raises UnsupportedError (a ValueError) for a framework or accelerator the catalog does
    not know, UsageError (a ValueError) for a malformed request, NotFoundError (a
    RuntimeError) when nothing matches and AmbiguousError (a RuntimeError) when the request
    needs a region. Answers are remembered per database until another connection commits to
    it, so a service resolving in a loop does not repeat the query.

    ``platform`` (linux/arm64) keeps only images their registry said run on it (pai-catalog
    digests asks); ``pin`` answers ``name@sha256:...``, the digest the tag pointed at when last
    asked, and raises NotFoundError when none is known.
    """
    texts = {
        "framework_name": framework_name, "framework_version": framework_version,
        "accelerator_type": accelerator_type, "image_scope": image_scope, "region": region,
        "python_version": python_version, "cuda_version": cuda_version, "os": os,
        "endpoint": endpoint, "mirror": mirror, "platform": platform,
    }  # fmt: skip
    as_of, db = _checked(texts, as_of, db)
    handle = reader(resolve_target(db))
    generation = handle.generation()
    bound = default_region() if region is None else None
    key = (
        handle.target.url, framework_name, framework_version, accelerator_type, image_scope,
        region, bound, python_version, cuda_version, os, as_of, platform,
    )  # fmt: skip
    network, mirror = network_of(endpoint), mirror_of(mirror)
    remembered = _ANSWERS.get(key)
    if remembered is not None and generation is not None and remembered[0] == generation:
        return pulled_from(remembered[1], network, mirror, bool(pin))
    info = _retrieve(
        handle, framework_name, framework_version, accelerator_type, image_scope,
        region, bound, python_version, cuda_version, os, as_of, check_platform(platform),
    )  # fmt: skip
    if generation is not None:
        if len(_ANSWERS) >= MAX_REMEMBERED:
            _ANSWERS.pop(next(iter(_ANSWERS)))
        _ANSWERS[key] = (generation, info)
    return pulled_from(info, network, mirror, bool(pin))


def _bound_region(region: str | None) -> str | None:
    """The region a listing is of: the one given ("any": every region), else the one the
    environment binds, as for retrieve, else every region."""
    if region is not None:
        return region
    bound = default_region()
    return bound.region if bound else None


def _retrieve(
    handle: Reader,
    framework_name: str,
    framework_version: str,
    accelerator_type: str,
    image_scope: str,
    region: str | None,
    bound: BoundRegion | None,
    python_version: str | None,
    cuda_version: str | None,
    os: str | None,
    as_of: datetime | str | None,
    platform: str | None,
) -> ImageInfo:
    require_text("framework_name", framework_name)
    if not framework_name or not framework_name.strip():
        raise UsageError("Give a framework name, such as PyTorch or TensorFlow.")
    request = _request(framework_version)
    try:
        return _best(
            handle, framework_name, request, accelerator_type, image_scope,
            bound.region if bound else region, python_version, cuda_version, os, as_of, platform,
        )  # fmt: skip
    except NotFoundError as exc:
        if bound is None:
            raise
        raise NotFoundError(
            f"{exc} The region {bound.region} came from {bound.source}; "
            f"{spelled('region')} chooses another."
        ) from None


def _best(
    handle: Reader,
    framework_name: str,
    request: versions.VersionRequest,
    accelerator_type: str,
    image_scope: str,
    region: str | None,
    python_version: str | None,
    cuda_version: str | None,
    os: str | None,
    as_of: datetime | str | None,
    platform: str | None,
) -> ImageInfo:
    f = make_filters(
        framework_name,
        accelerator_type,
        image_scope,
        region,
        python_version,
        cuda_version,
        os,
        False,
        as_of,
    )
    f = replace(f, platform=platform)
    clause, params = version_clause(request)
    # An image whose URI does not parse cannot be pulled: never an answer.
    clause += " AND v.parse_status <> 'unrecognized'"
    if f.region is None:  # no region bound: the candidates must lie in one, whatever wins
        check_one_region(handle, f, framework_name, request, clause, params)
    wanted_build = requested_build(request)
    if request.kind == "range":
        rows = [
            r
            for r in _select(handle, f, clause, labels=True)
            if request.matches(r["framework_version"])
        ]
    else:
        rows = _best_rows(handle, f, request, clause, params, wanted_build is not None)
    if wanted_build:
        # Asking for 2.1.0-accl prefers that variant among the images of equal version.
        rows = sorted(rows, key=lambda r: build_of(r["framework_version"]) != wanted_build)
    if not rows and f.platform is not None:
        raise _not_on_platform(handle, f, framework_name, request, clause, params)
    if not rows:
        raise explain_missing(handle, f, framework_name, request)
    return image_info(rows[0], f.scope, labels=True)


def _not_on_platform(
    handle: Reader,
    f: Filters,
    framework_name: str,
    request: versions.VersionRequest,
    clause: str,
    params: dict[str, Any],
) -> CatalogError:
    """Why nothing runs on the platform asked for: nothing matches at all, or the images that
    match are known to run elsewhere, or their platforms are not known yet."""
    anywhere = replace(f, platform=None)
    rows = [
        row
        for row in _select(handle, anywhere, clause, params)
        if request.kind != "range" or request.matches(row["framework_version"])
    ]
    if not rows:
        return explain_missing(handle, anywhere, framework_name, request)
    unknown = sum(1 for row in rows if not row["manifest_platforms"])
    elsewhere = sorted(
        {
            p
            for row in rows
            if row["manifest_platforms"]
            for p in row["manifest_platforms"].split(",")
        }
    )
    known = len(rows) - unknown
    run = "runs" if known == 1 else "run"
    said = f" ({known} {run} on {', '.join(elsewhere)})" if elsewhere else ""
    have = "has" if unknown == 1 else "have"
    hint = (
        f"; {unknown} {have} no known platforms: 'pai-catalog digests' asks their registries"
        if unknown
        else ""
    )
    return NotFoundError(
        f"None of the {len(rows)} images matching {framework_name} {request.text} is known to run "
        f"on {f.platform}{said}{hint}."
    )


def _request(framework_version: str | None) -> versions.VersionRequest:
    require_text("framework_version", framework_version)
    if framework_version is not None and not framework_version.strip():
        raise UsageError(
            "The version is empty; ask for latest, 2.1.0, 2.1 or a range like >=2.0,<2.2."
        )
    try:
        return versions.parse_request(framework_version)
    except ValueError as exc:
        raise UsageError(f"{exc}; ask for latest, 2.1.0, 2.1 or a range like >=2.0,<2.2.") from None


def _best_rows(
    db: Reader,
    f: Filters,
    request: versions.VersionRequest,
    clause: str,
    params: dict[str, Any],
    all_ties: bool,
) -> list[dict[str, Any]]:
    """The best candidates, one version class at a time: each query is then a pure index seek
    (releases first; prereleases only when no release matches; unparsed versions last)."""
    classes = (2, 1, 0) if request.kind == "latest" else (2, 1)
    for version_class in classes:
        rows = _select(
            db,
            f,
            f"{clause} AND v.version_class = {version_class}",
            params,
            limit=None if all_ties else 1,
            labels=True,
        )
        if rows:
            return rows
    return []


def list_images(
    framework_name: str | None = None,
    session: Any = None,
    image_scope: str | None = "training",
    *,
    framework_version: str | None = None,
    accelerator_type: str | None = None,
    region: str | None = None,
    python_version: str | None = None,
    cuda_version: str | None = None,
    os: str | None = None,
    include_removed: bool = False,
    as_of: datetime | str | None = None,
    labels: bool = True,
    endpoint: str | None = None,
    mirror: str | None = None,
    platform: str | None = None,
    db: str | None = None,
) -> list[ImageInfo]:
    """Every image matching the filters, by framework, then highest version first.

    The first three arguments are the PAI SDK's ``list_images``: ``session`` is ignored, and
    the scope is training unless given (``image_scope=None`` lists every scope, as the CLI's
    ``list`` does without ``--scope``). ``labels=False`` leaves each image's labels empty, a
    little faster for long listings that do not need them. ``platform`` (linux/arm64) keeps
    only images their registry said run on it."""
    texts = {
        "framework_name": framework_name, "framework_version": framework_version,
        "accelerator_type": accelerator_type, "image_scope": image_scope, "region": region,
        "python_version": python_version, "cuda_version": cuda_version, "os": os,
        "endpoint": endpoint, "mirror": mirror, "platform": platform,
    }  # fmt: skip
    as_of, db = _checked(texts, as_of, db)
    f = make_filters(
        framework_name,
        accelerator_type,
        image_scope,
        _bound_region(region),
        python_version,
        cuda_version,
        os,
        include_removed,
        as_of,
    )
    f = replace(f, platform=check_platform(platform))
    handle = reader(resolve_target(db))
    request = _request(framework_version)
    clause, params = ("", {}) if request.kind == "latest" else version_clause(request)
    rows = _select(handle, f, clause, params, labels=labels, order=statements.LIST_ORDER)
    if request.kind == "range":
        rows = [r for r in rows if request.matches(r["framework_version"])]
    if not rows and f.platform is not None:  # nothing known to run there: say why
        raise _not_on_platform(
            handle, f, framework_name or "any framework", request, clause, params
        )
    if not rows and f.as_of is not None:
        early = before_history(handle, f)
        if early is not None:
            raise early
    if not rows and f.as_of is None and (framework_name or f.region or f.accelerator):
        unknown = unknown_name(handle, f, framework_name)
        if unknown is not None:  # a typo lists nothing: say so, not an empty list
            raise unknown
    network, mirror = network_of(endpoint), mirror_of(mirror)
    return [pulled_from(image_info(row, f.scope, labels), network, mirror) for row in rows]


def list_versions(
    framework_name: str,
    *,
    image_scope: str | None = None,
    accelerator_type: str | None = None,
    region: str | None = None,
    include_removed: bool = False,
    as_of: datetime | str | None = None,
    db: str | None = None,
) -> list[str]:
    """The framework's versions, highest first (prereleases after releases): one per
    semantic version, in its fullest plain spelling (version_details gives the others)."""
    found = version_details(
        framework_name, image_scope=image_scope, accelerator_type=accelerator_type,
        region=region, include_removed=include_removed, as_of=as_of, db=db,
    )  # fmt: skip
    return [group.version for group in found]


def version_details(
    framework_name: str,
    *,
    image_scope: str | None = None,
    accelerator_type: str | None = None,
    region: str | None = None,
    include_removed: bool = False,
    as_of: datetime | str | None = None,
    db: str | None = None,
) -> list[VersionGroup]:
    """list_versions, each with the spellings and build variants it covers, when the catalog
    first saw it, and its regions and accelerators."""
    texts = {
        "framework_name": framework_name, "accelerator_type": accelerator_type,
        "image_scope": image_scope, "region": region,
    }  # fmt: skip
    as_of, db = _checked(texts, as_of, db)
    if not framework_name or not framework_name.strip():
        raise UsageError("Give a framework name, such as PyTorch or TensorFlow.")
    f = make_filters(
        framework_name, accelerator_type, image_scope, _bound_region(region), None, None, None,
        include_removed, as_of,
    )  # fmt: skip
    handle = reader(resolve_target(db))
    found = version_groups(handle, f)
    if not found:
        raise explain_missing(handle, f, framework_name, versions.parse_request("latest"))
    return found


def show(
    uri_or_id: str,
    *,
    region: str | None = None,
    endpoint: str | None = None,
    mirror: str | None = None,
    db: str | None = None,
) -> ImageInfo:
    """One image by URI (in either host form, VPC or public) or ImageId, removed ones
    included."""
    texts = {"uri_or_id": uri_or_id, "region": region, "endpoint": endpoint, "mirror": mirror}
    _, db = _checked(texts, None, db)
    needle = (uri_or_id or "").strip()
    if not needle:
        raise UsageError("Give an image URI or ImageId, such as one pai-catalog list shows.")
    network, mirror = network_of(endpoint), mirror_of(mirror)
    handle = reader(resolve_target(db))
    f = Filters(region=region.strip().lower() if region else None, include_removed=True)
    rows = _select(
        handle,
        f,
        "AND (v.uri IN (:needle, :vpc, :public) OR v.image_id = :needle)",
        {
            "needle": needle,
            "vpc": on_network(needle, "vpc"),
            "public": on_network(needle, "public"),
        },
        labels=True,
    )
    if not rows:
        raise NotFoundError(f"No image with URI or ImageId {uri_or_id!r} ({catalog_age(handle)}).")
    regions = sorted({row["region"] for row in rows})
    if len(regions) > 1:
        raise AmbiguousError(
            f"{uri_or_id!r} is in {len(regions)} regions ({', '.join(regions[:5])}); "
            f"choose one with {spelled('region')}."
        )
    # The live image first, then the one stored under the very URI asked for.
    rows.sort(key=lambda row: (row["valid_to"] is not None, row["uri"] != needle))
    return pulled_from(image_info(rows[0], None, labels=True), network, mirror)
