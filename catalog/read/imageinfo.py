"""ImageInfo, what every query returns: the PAI SDK's fields first, then the catalog's."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from catalog.config import ENV_MIRROR
from catalog.errors import NotFoundError, UsageError
from catalog.parse import SCOPES, times
from catalog.parse.uri import NETWORKS, check_mirror, mirrored, on_network, pinned


@dataclass(frozen=True)
class ImageInfo:
    """One image, with the PAI SDK's ImageInfo fields first."""

    image_name: str | None
    image_uri: str | None
    framework_name: str | None
    framework_version: str | None
    image_scope: str | None
    accelerator_type: str | None
    python_version: str | None
    image_id: str
    region: str
    cuda_version: str | None
    os_version: str | None
    labels: Mapping[str, str | None] = field(default_factory=lambda: Labels(), hash=False)
    scopes: tuple[str, ...] = ()
    official: bool = False
    parse_status: str = "ok"
    created: str | None = None
    removed: bool = False
    mirror_uri: str | None = None  # with a mirror: the URI a cluster behind it pulls
    # What the URI's tag points at, as its registry last answered (pai-catalog digests).
    manifest_digest: str | None = None
    media_type: str | None = None  # of the manifest: an image's, or an index of platforms
    platforms: tuple[str, ...] = ()  # os/architecture[/variant]; () where the registry did not say
    digest_seen_at: str | None = None  # when the tag was first seen to point at this digest
    digest_checked_at: str | None = None  # when its registry last said so


class Labels(dict[str, "str | None"]):
    """An image's labels: a dict that cannot be changed, since answers are shared."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("ImageInfo.labels cannot be changed; copy it with dict(labels)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]


def _labels(row: Mapping[str, Any]) -> Labels:
    raw = row.get("labels_json")
    if not raw:
        return Labels()
    return Labels(json.loads(raw) if isinstance(raw, str) else raw)


def _scope_rank(scope: str) -> int:
    return SCOPES.index(scope) if scope in SCOPES else len(SCOPES)


def image_info(row: Mapping[str, Any], scope: str | None, labels: bool) -> ImageInfo:
    """An image_version row (with labels_json when ``labels``) as an ImageInfo."""
    scopes = tuple(row["scopes"].split(",")) if row["scopes"] else ()
    return ImageInfo(
        image_name=row["name"],
        image_uri=row["uri"],
        framework_name=row["framework"],
        framework_version=row["framework_version"],
        # With no scope asked for, the first in the SDK's order: training before develop.
        image_scope=scope or min(scopes, key=_scope_rank, default=None),
        accelerator_type=row["accelerator"],
        python_version=row["python_version"],
        image_id=row["image_id"],
        region=row["region"],
        cuda_version=row["cuda_version"],
        os_version=row["os_version"],
        labels=_labels(row) if labels else Labels(),
        scopes=scopes,
        official=bool(row["official"]),
        parse_status=row["parse_status"],
        created=times.iso(row["gmt_create_time"]),
        removed=row["valid_to"] is not None,
        manifest_digest=row["manifest_digest"],
        media_type=row["manifest_media_type"],
        platforms=tuple(row["manifest_platforms"].split(",")) if row["manifest_platforms"] else (),
        digest_seen_at=times.iso(row["manifest_seen_at"]),
        digest_checked_at=times.iso(row["manifest_checked_at"]),
    )


def network_of(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    network = endpoint.strip().lower()
    if network not in NETWORKS:
        raise UsageError(
            f"Unknown endpoint {endpoint!r}; use vpc (from inside an Alibaba Cloud VPC) or public."
        )
    return network


def mirror_of(mirror: str | None) -> str | None:
    """The mirror registry asked for, else PAI_CATALOG_MIRROR's; None for neither (or "")."""
    chosen = os.environ.get(ENV_MIRROR, "") if mirror is None else mirror
    return check_mirror(chosen) if chosen.strip() else None


def pulled_from(
    info: ImageInfo, network: str | None, mirror: str | None, pin: bool = False
) -> ImageInfo:
    """The image with its URI in the host form pullable from ``network``, and with the URI it
    has behind ``mirror``; with ``pin``, both name the manifest digest instead of the tag.
    Stored URIs stay as the API gave them."""
    if info.image_uri is None or (network is None and mirror is None and not pin):
        return info
    uri = info.image_uri if network is None else on_network(info.image_uri, network)
    if pin:
        if info.manifest_digest is None:
            raise NotFoundError(
                f"No digest is known for {info.image_uri}; run 'pai-catalog digests' to ask "
                "its registry, or answer without pinning."
            )
        uri = pinned(uri, info.manifest_digest)
    return replace(info, image_uri=uri, mirror_uri=mirrored(uri, mirror) if mirror else None)
