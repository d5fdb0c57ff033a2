"""The region a request is bound to, as the PAI SDK and the aliyun CLI bind one; a request
that binds none must have its candidates in one region."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catalog import versions
from catalog.config import ENV_REGION, spelled
from catalog.errors import AmbiguousError
from catalog.filters import Filters, describe
from catalog.readdb import Reader, catalog_age


@dataclass(frozen=True)
class BoundRegion:
    """The region a request is bound to when it names none, and where that came from."""

    region: str
    source: str


def default_region() -> BoundRegion | None:
    """The region the environment binds, as the PAI SDK and the aliyun CLI find it:
    PAI_CATALOG_REGION, else ALIBABA_CLOUD_REGION_ID, else the region_id of the aliyun CLI's
    profile in use (ALIBABA_CLOUD_PROFILE, else its current one); None when none does."""
    for name in (ENV_REGION, "ALIBABA_CLOUD_REGION_ID"):
        value = os.environ.get(name, "").strip().lower()
        if value:
            return BoundRegion(value, name)
    found = _profile_region()
    return BoundRegion(found.lower(), f"the aliyun CLI profile in {_CLI_CONFIG}") if found else None


_CLI_CONFIG = "~/.aliyun/config.json"
# The profile's region by what decides it (the file's identity and the profile variables): a
# loop of retrieve() bound by the profile took 132 us a call reading the file each time, 76 us
# with this (46 us with region= given).
_PROFILE_REGIONS: dict[tuple[object, ...], str | None] = {}


def _profile_region() -> str | None:
    path = Path.home() / ".aliyun" / "config.json"
    try:
        found = path.stat()
    except OSError:
        return None
    names = ("ALIBABA_CLOUD_PROFILE", "ALIBABA_CLOUD_CLI_PROFILE_DISABLED")
    key = (str(path), found.st_mtime_ns, found.st_size, *(os.environ.get(n) for n in names))
    if key not in _PROFILE_REGIONS:
        from catalog.credentials import cli_region

        _PROFILE_REGIONS.clear()
        _PROFILE_REGIONS[key] = cli_region()
    return _PROFILE_REGIONS[key]


def region_advice() -> str:
    """How to bind a region, in the caller's spelling."""
    return (
        f"choose one with {spelled('region')}, or set {ENV_REGION} (or ALIBABA_CLOUD_REGION_ID, "
        "or region_id in your aliyun CLI profile)"
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
    join, where, base = f.where()
    rows = db.rows(
        f"SELECT DISTINCT v.region, v.framework_version FROM image_version v {join} "
        f"WHERE {where} {clause}",
        {**base, **params},
    )
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
