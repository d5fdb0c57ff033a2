"""Image URIs: split host/namespace.../repository[:tag][@digest] by docker's rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from catalog.errors import UsageError, quoted


@dataclass(frozen=True)
class ImageRef:
    """The parts of an image URI; ``error`` says why it did not parse."""

    host: str | None
    namespace: str | None
    repository: str | None
    tag: str | None
    digest: str | None
    error: str | None


_PATH_PART_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.IGNORECASE)
_LOWER_PART_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")  # a repository path
_HOST_RE = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?", re.IGNORECASE)
_TAG_RE = re.compile(r"\w[\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-f]{32,}", re.IGNORECASE)


_SPACE_RE = re.compile(r"\s")


def _bad_uri(reason: str) -> ImageRef:
    return ImageRef(None, None, None, None, None, reason)


def parse_uri(uri: str) -> ImageRef:
    """Split ``host/namespace.../repository[:tag][@digest]`` (docker's host rule); never raises."""
    text = uri.strip() if isinstance(uri, str) else ""
    if not text:
        return _bad_uri("the URI is empty")
    if _SPACE_RE.search(text):
        return _bad_uri(f"the URI {text!r} contains whitespace")
    name, _, digest = text.partition("@")
    if "@" in text and not _DIGEST_RE.fullmatch(digest):
        return _bad_uri(f"the digest in {text!r} is not algorithm:hex")
    tag: str | None = None
    if ":" in name.rpartition("/")[2]:
        name, _, tag = name.rpartition(":")
        if not _TAG_RE.fullmatch(tag):
            return _bad_uri(f"the tag in {text!r} is empty or has characters a tag cannot have")
    host, namespace, repository, problem = _split_name(name)
    if problem == "host":
        return _bad_uri(f"the registry host in {text!r} is malformed")
    if problem == "path":
        return _bad_uri(f"no valid repository path in {text!r}")
    return ImageRef(host, namespace, repository, tag, digest or None, None)


@lru_cache(maxsize=4096)  # a few hundred repositories hold every image
def _split_name(name: str) -> tuple[str | None, str | None, str | None, str | None]:
    """Host, namespace and repository of ``host/namespace.../repository``, and what is wrong
    with it: "host", "path" or None."""
    parts = name.split("/")
    host = None
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        host = parts.pop(0)
        if not _HOST_RE.fullmatch(host):
            return None, None, None, "host"
    if not all(_PATH_PART_RE.fullmatch(part) for part in parts):
        return None, None, None, "path"
    return host, "/".join(parts[:-1]) or None, parts[-1], None


# A registry host of Alibaba Cloud with a region in it: NAME.REGION[.cr].aliyuncs.com, reached
# from inside a VPC as NAME-vpc.REGION[.cr].aliyuncs.com (dsw-registry, eas-registry, registry).
_NETWORK_HOST_RE = re.compile(
    r"(?P<name>[a-z0-9-]+?)(?:-vpc)?\.(?P<rest>[a-z]{2}-[a-z0-9-]+(?:\.cr)?\.aliyuncs\.com)",
    re.IGNORECASE,
)
NETWORKS = ("vpc", "public")


def on_network(uri: str, network: str) -> str:
    """``uri`` with its registry host in the form pullable from ``network``: "vpc" (inside an
    Alibaba Cloud VPC) or "public" (from anywhere); a URI of any other host as it is."""
    host, slash, rest = uri.partition("/")
    found = _NETWORK_HOST_RE.fullmatch(host)
    if not slash or found is None:
        return uri
    suffix = "-vpc" if network == "vpc" else ""
    return f"{found['name']}{suffix}.{found['rest']}/{rest}"


def host_region(uri: str | None) -> str | None:
    """The region an Alibaba Cloud registry host names (dsw-registry.cn-hangzhou.cr...), if
    it names one."""
    found = _NETWORK_HOST_RE.fullmatch((uri or "").partition("/")[0])
    return found["rest"].split(".", 1)[0].lower() if found else None


_REGION_RE = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


def check_region(region: str) -> str:
    """A region id such as cn-hangzhou, stripped and lower-cased."""
    value = region.strip().lower()
    if not _REGION_RE.match(value):
        several = " (several are separated by spaces)" if "," in value else ""
        raise UsageError(
            f"{quoted(region)} is not a region id; write it like cn-hangzhou or "
            f"ap-southeast-1{several}."
        )
    return value


def check_mirror(prefix: str) -> str:
    """A mirror registry as given: ``host[:port][/path...]``, without a scheme or a final /;
    the path in lower case, as repository names are."""
    text = prefix.strip().rstrip("/")
    host, _, path = text.partition("/")
    named = "." in host or ":" in host or host == "localhost"
    port = host.rpartition(":")[2] if ":" in host else "1"
    sound = (
        "://" not in text
        and named
        and _HOST_RE.fullmatch(host) is not None
        and port.isdigit()
        and 0 < int(port) < 65536
        and (not path or all(_LOWER_PART_RE.fullmatch(part) for part in path.split("/")))
    )
    if not sound:
        raise UsageError(
            f"{quoted(prefix)} is not a mirror registry; write it like "
            "registry.example.com:5000 or registry.example.com/pai-mirror (no https://, no tag, "
            "a path in lower case)."
        )
    return text


def pinned(uri: str, digest: str) -> str:
    """``uri`` naming ``digest`` instead of its tag (name@sha256:...): docker and skopeo pull
    a name with a digest, and refuse a tag and a digest together."""
    name = uri.partition("@")[0]
    tag = parse_uri(name).tag
    return f"{name.removesuffix(f':{tag}') if tag else name}@{digest}"


def mirrored(uri: str, prefix: str) -> str:
    """``uri`` as a cluster behind the mirror ``prefix`` pulls it: the registry host replaced by
    the prefix, the path (namespace/repository:tag, and @digest) kept."""
    host, slash, rest = uri.partition("/")
    named = slash and ("." in host or ":" in host or host == "localhost")
    return f"{prefix}/{rest if named else uri}"
