"""What to copy into a mirror registry: the images a selection names, each with the URI it is
pulled from and the URI it gets behind the mirror."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from catalog.config import resolve_target
from catalog.errors import NotFoundError, UsageError
from catalog.parse import versions
from catalog.parse.uri import check_mirror, parse_uri, pinned
from catalog.read import statements
from catalog.read.connection import reader
from catalog.read.images import list_images


@dataclass(frozen=True)
class Copy:
    """One image to copy: from ``source`` (as the catalog lists it, or in the host form asked
    for; as name@digest where pai-catalog digests learned what the tag points at, so that the
    copy is of exactly that image) to ``target`` behind the mirror, by its tag."""

    source: str
    target: str
    image_id: str
    region: str
    framework_name: str | None
    framework_version: str | None
    namespace: str | None
    repository: str | None
    tag: str | None
    digest: str | None = None  # the manifest digest the copy is pinned to


def plan(
    prefix: str,
    framework_name: str | None = None,
    *,
    image_scope: str | None = None,
    accelerator_type: str | None = None,
    region: str | None = None,
    python_version: str | None = None,
    cuda_version: str | None = None,
    os: str | None = None,
    as_of: datetime | str | None = None,
    latest: int | None = None,
    since: int | None = None,
    endpoint: str | None = None,
    db: str | None = None,
) -> list[Copy]:
    """The copies that mirror the images these filters select (as ``list_images`` selects
    them), each once: with ``latest``, only each framework's ``latest`` highest versions; with
    ``since``, only those a run after run ``since`` added or changed."""
    if not isinstance(prefix, str):
        raise UsageError(f"prefix must be text, not {prefix!r}.")
    prefix = check_mirror(prefix)
    if latest is not None and (not isinstance(latest, int) or latest < 1):
        raise UsageError(f"latest must be a whole number of versions, 1 or more, not {latest!r}.")
    found = list_images(
        framework_name, image_scope=image_scope, accelerator_type=accelerator_type,
        region=region, python_version=python_version, cuda_version=cuda_version, os=os,
        as_of=as_of, labels=False, endpoint=endpoint, mirror=prefix, db=db,
    )  # fmt: skip
    if since is not None:
        wanted = _written_since(since, db)
        found = [image for image in found if (image.image_id, image.region) in wanted]
    if latest is not None:
        found = _latest(found, latest)
    copies: dict[str, Copy] = {}
    for image in found:
        if image.image_uri is None or image.mirror_uri is None:
            continue  # no URI to copy from
        ref = parse_uri(image.image_uri)
        if not ref.host:
            continue  # a URI with no registry host: nowhere known to copy it from
        source, digest = image.image_uri, image.manifest_digest or ref.digest
        if digest:  # name@digest, as docker and skopeo take it (never a tag and a digest)
            source = pinned(source, digest)
        copy = Copy(
            source, image.mirror_uri, image.image_id, image.region, image.framework_name,
            image.framework_version, ref.namespace, ref.repository, ref.tag, digest,
        )  # fmt: skip
        copies.setdefault(copy.target, copy)  # one image under several regions' hosts: one copy
    return list(copies.values())


def _written_since(run: Any, db: str | None) -> set[tuple[str, str]]:
    if not isinstance(run, int) or isinstance(run, bool) or run < 0:
        raise UsageError(f"since must be a run id (pai-catalog runs lists them), not {run!r}.")
    handle = reader(resolve_target(db))
    if run and not handle.rows(statements.RUN_EXISTS, {"run": run}):
        raise NotFoundError(f"No run {run}; pai-catalog runs lists them.")
    return {(row["image_id"], row["region"]) for row in handle.rows(*statements.since(run))}


def _latest(found: list[Any], count: int) -> list[Any]:
    """The images of each framework's ``count`` highest versions (spellings of one version are
    one version), in the order given."""
    kept: dict[str | None, list[Any]] = {}
    out = []
    for image in found:
        key = versions.sort_key(image.framework_version) if image.framework_version else None
        seen = kept.setdefault(image.framework_name, [])
        if key not in seen:
            if len(seen) >= count:
                continue
            seen.append(key)
        out.append(image)
    return out
