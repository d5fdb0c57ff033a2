"""Version parsing, the stored sort key, and version requests (latest, exact, prefix, range)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Ranks of prerelease phases; a release ranks above all of them through the key layout.
_PHASES = {
    "dev": 0, "nightly": 0, "alpha": 1, "a": 1, "beta": 2, "b": 2, "preview": 3, "pre": 3,
    "rc": 4, "c": 4,
}  # fmt: skip
_PHASE_NAMES = {0: "dev", 1: "alpha", 2: "beta", 3: "preview", 4: "rc"}

_PREFIXES = {"python": re.compile(r"^py(?:thon)?"), "cuda": re.compile(r"^cu(?:da)?")}
_DOTTED_RE = re.compile(r"([0-9]+)\.([0-9]+)(?:\.[0-9]+)*")
_VERSION_RE = re.compile(r"^[vVrR]?(\d+(?:\.\d+)*)(.*)$")
_PRE_RE = re.compile(
    r"^(rc|alpha|beta|preview|pre|dev|nightly|a|b|c)\.?(\d*)(?=$|[.\-_+])(.*)$", re.I
)
_PRE_LETTER_ONLY = {"a", "b", "c"}  # need a number: "a1" is alpha, "accl" is a build variant

# Sort-key layout (compared as plain strings, so SQL can ORDER BY it):
#   "1" + each release component as <length digit><digits> + marker + prerelease part
# Markers sort below every digit: prerelease "-" < release "." < a further component.
KEY_PARSED = "1"
KEY_UNPARSED = "0"
_MARK_PRE = "-"
_MARK_RELEASE = "."

MAX_DIGITS = 30
CLASS_NONE = 0
CLASS_PRERELEASE = 1
CLASS_RELEASE = 2


@dataclass(frozen=True)
class Version:
    """A parsed version: release numbers, optional prerelease, and a build variant."""

    text: str
    release: tuple[int, ...]
    pre: tuple[int, int] | None = None
    build: str | None = None

    @property
    def is_prerelease(self) -> bool:
        return self.pre is not None

    @property
    def key(self) -> str:
        return _release_prefix(self.release) + _tail(self.pre)

    @property
    def normalized(self) -> str:
        text = ".".join(str(n) for n in self.release)
        if self.pre is not None:
            text += f"{_PHASE_NAMES[self.pre[0]]}{self.pre[1]}"
        return text

    def to_semver(self) -> Any:
        """The same version as a ``semantic_version.Version`` (for range specs)."""
        import semantic_version

        major, minor, patch = (*self.release, 0, 0, 0)[:3]
        pre = () if self.pre is None else (_PHASE_NAMES[self.pre[0]], str(self.pre[1]))
        extra = tuple(str(n) for n in self.release[3:])
        return semantic_version.Version(
            major=major, minor=minor, patch=patch, prerelease=pre, build=extra
        )


def _normal_release(numbers: tuple[int, ...]) -> tuple[int, ...]:
    # At least three components, trailing zeros beyond three dropped: 2.1 == 2.1.0 == 2.1.0.0.
    padded = list(numbers) + [0] * (3 - len(numbers))
    while len(padded) > 3 and padded[-1] == 0:
        padded.pop()
    return tuple(padded)


def _encode(n: int) -> str:
    digits = str(n)
    return chr(ord("0") + len(digits)) + digits


def _release_prefix(release: tuple[int, ...]) -> str:
    return KEY_PARSED + "".join(_encode(n) for n in release)


def _tail(pre: tuple[int, int] | None) -> str:
    if pre is None:
        return _MARK_RELEASE
    return _MARK_PRE + str(pre[0]) + _encode(pre[1])


@lru_cache(maxsize=4096)
def parse_version(text: str | None) -> Version | None:
    """Parse ``text`` leniently; ``None`` when it does not start with a number."""
    if not text:
        return None
    match = _VERSION_RE.match(text.strip())
    if match is None:
        return None
    parts = match.group(1).split(".")
    if any(len(part) > MAX_DIGITS for part in parts):
        return None  # not a version, and int() of thousands of digits is refused anyway
    numbers = tuple(int(part) for part in parts)
    suffix = match.group(2).lstrip(".-_+")
    pre: tuple[int, int] | None = None
    build: str | None = None
    if suffix:
        pre_match = _PRE_RE.match(suffix)
        if pre_match and not (
            pre_match.group(1).lower() in _PRE_LETTER_ONLY and not pre_match.group(2)
        ):
            phase = _PHASES[pre_match.group(1).lower()]
            pre = (phase, int(pre_match.group(2) or 0))
            build = pre_match.group(3).lstrip(".-_+") or None
        else:
            build = suffix
    return Version(text=text.strip(), release=_normal_release(numbers), pre=pre, build=build)


def sort_key(text: str | None) -> str:
    """The stored sort key: parseable versions in semantic order, above unparseable ones."""
    version = parse_version(text)
    if version is None:
        return KEY_UNPARSED + (text or "").lower()
    return version.key


def version_class(text: str | None) -> int:
    """2 for a release, 1 for a prerelease, 0 when missing or unparseable."""
    version = parse_version(text)
    if version is None:
        return CLASS_NONE
    return CLASS_PRERELEASE if version.is_prerelease else CLASS_RELEASE


def compare(a: str | None, b: str | None) -> int:
    """-1, 0 or 1 by version precedence (build variants compare equal)."""
    ka, kb = sort_key(a), sort_key(b)
    return (ka > kb) - (ka < kb)


_RANGE_CHARS = re.compile(r"[<>=!~^*,]|\s")
# A requested version: numbers, then a glued or separated suffix (2.1.0rc1, 1.15PAI, 2.1.0-accl).
_REQUEST_RE = re.compile(
    r"^[vV]?\d+(\.\d+)*([A-Za-z][A-Za-z0-9.]*|[-+_][A-Za-z0-9][A-Za-z0-9.\-]*"
    r"|\.(dev|post|rc|a|b|alpha|beta|pre|preview)\d*)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class VersionRequest:
    """What a user asked for: ``latest``, an exact version, a prefix, or a range spec."""

    kind: str  # "latest" | "exact" | "prefix" | "range"
    text: str
    key: str = ""  # exact: the full key; prefix: the release-key prefix
    spec: Any = None

    def matches(self, version_text: str | None) -> bool:
        """Whether a stored version satisfies the request (used for ranges and checks)."""
        if self.kind == "latest":
            return True
        version = parse_version(version_text)
        if version is None:
            return False
        if self.kind == "exact":
            return version.key == self.key
        if self.kind == "prefix":
            return version.key.startswith(self.key) and version.key[len(self.key)] in "-.0123456789"
        return bool(self.spec.match(version.to_semver()))


def parse_request(text: str | None) -> VersionRequest:
    """Classify a requested version; raises ``ValueError`` with a readable reason."""
    raw = (text or "latest").strip()
    if raw.lower() in ("", "latest"):
        return VersionRequest("latest", "latest")
    if _RANGE_CHARS.search(raw):
        import semantic_version

        try:
            spec = semantic_version.SimpleSpec(raw.replace(" ", ""))
        except ValueError as exc:
            raise ValueError(f"{raw!r} is not a valid version range ({exc})") from None
        return VersionRequest("range", raw, spec=spec)
    version = parse_version(raw) if _REQUEST_RE.match(raw) else None
    if version is None:
        raise ValueError(f"{raw!r} is not a version")
    numbers = [int(p) for p in _VERSION_RE.match(raw).group(1).split(".")]  # type: ignore[union-attr]
    if version.pre is None and version.build is None and len(numbers) < 3:
        return VersionRequest("prefix", raw, key=_release_prefix(tuple(numbers)))
    return VersionRequest("exact", raw, key=version.key)


def major_minor(text: str, kind: str, *, prefixed: bool = False) -> str | None:
    """A Python or CUDA version (``kind``) as major.minor, however it is spelled: "3.10.4",
    "py310", "Python 3.10", "cu121", "cuda12.1"; None when it is none of these (and, with
    ``prefixed``, when it lacks the py/cu prefix, as a tag's token must have it).

    Python spells 310 as 3 and 10, CUDA spells 121 as 12 and 1; py3 and cu12 are a major alone.
    """
    compact = text.strip().lower().replace(" ", "")
    bare = _PREFIXES[kind].sub("", compact, count=1)
    if prefixed and bare == compact:
        return None
    if bare.isascii() and bare.isdigit():
        if len(bare) == 1 or (kind == "cuda" and len(bare) == 2):
            return bare
        return f"{bare[0]}.{bare[1:]}" if kind == "python" else f"{bare[:-1]}.{bare[-1]}"
    match = _DOTTED_RE.fullmatch(bare)
    return f"{match[1]}.{match[2]}" if match else None
