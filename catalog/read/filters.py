"""What a query asks for: normalized filters and version requests, as SQL conditions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from catalog.errors import UsageError, quoted
from catalog.parse import SCOPES, versions


class ImageScope:
    """The scopes an image serves, named as the PAI SDK's ``pai.image.ImageScope`` names them:
    ``retrieve(..., image_scope=ImageScope.INFERENCE)`` runs unchanged."""

    TRAINING = "training"
    INFERENCE = "inference"
    DEVELOP = "develop"


@dataclass(frozen=True)
class Filters:
    framework_key: str | None = None
    accelerator: str | None = None
    scope: str | None = None
    region: str | None = None
    python: str | None = None
    cuda: str | None = None
    os: str | None = None
    include_removed: bool = False
    as_of: datetime | None = None
    platform: str | None = None  # os/architecture[/variant], where the registry said
    all_states: bool = False  # every state ever, current or not (a timeline)


def _norm_python(value: str | None) -> str | None:
    found = versions.major_minor(value, "python") if value else None
    if value and found is None:
        raise UsageError(f"{value!r} is not a Python version; write it like 3.10 or py310.")
    return found


def _norm_cuda(value: str | None) -> str | None:
    found = versions.major_minor(value, "cuda") if value else None
    if value and found is None:
        raise UsageError(f"{value!r} is not a CUDA version; write it like 12.1 or cu121.")
    return found


def require_text(name: str, value: object) -> None:
    """Refuse an argument that should be text and is not (framework_version=2.1, a float,
    would otherwise fail deep inside as an AttributeError)."""
    if value is not None and not isinstance(value, str):
        hint = (
            ": write it in quotes ('3.10', not 3.10, which Python reads as 3.1)"
            if isinstance(value, (int, float)) and name.endswith("_version")
            else ""
        )
        raise UsageError(f"{name} must be text, not {quoted(value)}{hint}.")
    if value is not None and not encodes(value):
        raise UsageError(f"{name} is not UTF-8 text: {quoted(value)}.")


def encodes(text: str) -> bool:
    """Whether ``text`` is UTF-8 text: no lone surrogate (the trace of undecodable bytes)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


ANY = "any"  # --accelerator any, --scope any: images with none match too


def _unless_any(value: str | None) -> str | None:
    """``value`` stripped; None when missing, blank or "any" (no narrowing)."""
    if value is None or not value.strip() or value.strip().lower() == ANY:
        return None
    return value.strip()


def _norm_scope(value: str | None) -> str | None:
    if value is None:
        return None
    scope = value.strip().lower()
    if scope == ANY:
        return None
    if scope not in SCOPES:
        raise UsageError(f"Unknown scope {value!r}; use one of {', '.join(SCOPES)}, or any.")
    return scope


def _norm_as_of(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"{value!r} is not an ISO 8601 date or time; write it like 2026-01-31 "
                "or 2026-01-31T12:00:00Z."
            ) from None
    if moment is not None and moment.tzinfo is not None:
        try:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+14:00 is before the first year in UTC
            raise UsageError(
                f"{value!s} falls outside the years 1 to 9999 in UTC; give a time within them."
            ) from None
    return moment


def make_filters(
    framework_name: str | None,
    accelerator_type: str | None,
    image_scope: str | None,
    region: str | None,
    python_version: str | None,
    cuda_version: str | None,
    os: str | None,
    include_removed: bool,
    as_of: datetime | str | None,
) -> Filters:
    from catalog.parse.tags import canonical_framework

    for name, value in (
        ("framework_name", framework_name), ("accelerator_type", accelerator_type),
        ("image_scope", image_scope), ("region", region), ("python_version", python_version),
        ("cuda_version", cuda_version), ("os", os),
    ):  # fmt: skip
        require_text(name, value)
    return Filters(
        framework_key=canonical_framework(framework_name).lower() if framework_name else None,
        accelerator=(_unless_any(accelerator_type) or "").upper() or None,
        scope=_norm_scope(image_scope),
        region=(_unless_any(region) or "").lower() or None,
        python=_norm_python(python_version),
        cuda=_norm_cuda(cuda_version),
        os=os.strip().lower() if os else None,
        include_removed=include_removed,
        as_of=_norm_as_of(as_of),
    )


def version_clause(request: versions.VersionRequest) -> tuple[str, dict[str, Any]]:
    if request.kind == "exact":
        return "AND v.version_key = :vkey", {"vkey": request.key}
    if request.kind == "prefix":
        return "AND v.version_key >= :vlow AND v.version_key < :vhigh", {
            "vlow": request.key,
            "vhigh": request.key + "~",
        }
    return "", {}


def describe(f: Filters) -> str:
    parts = [
        f"{label} {value}"
        for label, value in (
            ("for accelerator", f.accelerator),
            ("scope", f.scope),
            ("region", f.region),
            ("python", f.python),
            ("cuda", f.cuda),
            ("os", f.os),
        )
        if value
    ]
    return ", ".join(parts) if parts else "in the catalog"


def requested_build(request: versions.VersionRequest) -> str | None:
    if request.kind != "exact":
        return None
    return build_of(request.text)


def build_of(text: str | None) -> str | None:
    parsed = versions.parse_version(text)
    return parsed.build.lower() if parsed is not None and parsed.build else None


_PLATFORM_RE = re.compile(r"[a-z0-9_.-]{1,32}/[a-z0-9_.-]{1,32}(/[a-z0-9_.-]{1,32})?")


def check_platform(platform: object) -> str | None:
    """A platform as os/architecture[/variant] (linux/arm64, linux/arm64/v8), lower-cased."""
    if platform is None:
        return None
    require_text("platform", platform)
    value = str(platform).strip().lower()
    if not _PLATFORM_RE.fullmatch(value):
        raise UsageError(
            f"{platform!r} is not a platform; write it as os/architecture[/variant], such as "
            "linux/amd64 or linux/arm64/v8."
        )
    return value
