"""What a tag points at: the manifest digest a registry answers for an image URI (OCI
distribution API, ``HEAD /v2/<name>/manifests/<reference>``), with the platforms of a
multi-platform index. A bearer-token challenge is followed anonymously, or with the credentials
Docker keeps for that registry (``~/.docker/config.json``); none of them reaches a message."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from catalog.errors import CatalogError
from catalog.parse.uri import parse_uri

INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFESTS = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ACCEPT = ", ".join((*INDEXES, *MANIFESTS))
MAX_BODY = 4 * 2**20  # a manifest, index, image config or token answer larger than this is refused
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}  # plain HTTP, as docker allows for them
_FIELD = re.compile(r'(\w+)="([^"]*)"')
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_PLATFORM = re.compile(r"[a-z0-9_.-]{1,32}(/[a-z0-9_.-]{1,32}){1,2}")


class RegistryError(CatalogError):
    """A registry did not say what an image's tag points at."""


class UnreachableError(RegistryError):
    """A registry did not answer at all (no connection, or no answer in time), or only that
    it is busy or failing (429, 5xx) however often it was asked."""


class MissingError(RegistryError):
    """A registry answered that it has no such image (404)."""


@dataclass(frozen=True)
class Manifest:
    """What a tag points at: its digest, the manifest's media type, and the platforms
    (os/architecture[/variant]) an index holds or a single image's config names; ``platforms``
    is None when they were not read (a recheck that found the digest it knew)."""

    digest: str
    media_type: str
    platforms: tuple[str, ...] | None = ()


def docker_config(home: Path | None = None) -> Path:
    """Docker's config file: in $DOCKER_CONFIG, else ~/.docker."""
    folder = os.environ.get("DOCKER_CONFIG")
    return (Path(folder) if folder else (home or Path.home()) / ".docker") / "config.json"


def docker_credentials(home: Path | None = None) -> dict[str, tuple[str, str]]:
    """Registry host -> (user, password) that Docker keeps in its config file (``auths``, as
    docker login writes them without a credential helper); none from a file that cannot be
    read."""
    path = docker_config(home)
    try:
        auths = json.loads(path.read_text(encoding="utf-8")).get("auths", {})
    except (OSError, ValueError, AttributeError):
        return {}
    found = {}
    for host, entry in auths.items() if isinstance(auths, dict) else ():
        try:
            pair = base64.b64decode(entry["auth"], validate=True).decode("utf-8")
        except (KeyError, TypeError, ValueError):
            continue
        user, colon, password = pair.partition(":")
        if not user or not colon:
            continue
        bare = str(host).removeprefix("https://").removeprefix("http://").split("/")[0]
        found[bare] = (user, password)
    return found


class RegistryClient:
    """Asks registries for manifests: retries 429, 5xx and network errors with backoff (a
    Retry-After honoured), and keeps each bearer token for the requests of its scope."""

    def __init__(
        self,
        credentials: Mapping[str, tuple[str, str]] | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credentials = dict(credentials or {})
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self._tokens: dict[tuple[str, str], str] = {}
        self.requests = 0  # HTTP requests made, retries included
        self.retries = 0
        self._session = requests.Session()
        self._session.trust_env = False  # no .netrc header in place of ours, no proxy guess

    def close(self) -> None:
        self._session.close()

    def manifest(self, uri: str, *, known: str | None = None) -> Manifest:
        """The manifest ``uri``'s tag (or digest) points at. When the registry still answers
        the digest ``known``, only its HEAD is asked (platforms None); otherwise the manifest
        is read for its platforms: an index's entries, or a single image's config blob."""
        ref = parse_uri(uri)
        if ref.error or not ref.host or not ref.repository:
            raise RegistryError(f"{uri} names no image in a registry ({ref.error or 'no host'}).")
        name = f"{ref.namespace}/{ref.repository}" if ref.namespace else ref.repository
        scheme = "http" if urlsplit(f"//{ref.host}").hostname in _LOOPBACK else "https"
        base = f"{scheme}://{ref.host}/v2/{name}"
        url = f"{base}/manifests/{ref.digest or ref.tag or 'latest'}"
        scope = f"repository:{name}:pull"
        answer = self._request("HEAD", url, ref.host, scope)
        digest = answer.headers.get("Docker-Content-Digest", "")
        if known is not None and digest == known:
            return Manifest(digest, _media_type(answer.headers, known_type=True), None)
        body = self._request("GET", url, ref.host, scope)
        content = _content(body, uri, self._timeout)
        found = "sha256:" + hashlib.sha256(content).hexdigest()
        digest = body.headers.get("Docker-Content-Digest", digest)
        if _DIGEST.fullmatch(digest) and digest != found and not ref.digest:
            raise RegistryError(f"{ref.host} answered a digest for {uri} that its manifest lacks.")
        if ref.digest and found != ref.digest:
            raise RegistryError(f"{ref.host} answered a manifest for {uri} of another digest.")
        document = _json(content, uri)
        media_type = _media_type(body.headers, document)
        if media_type not in INDEXES and media_type not in MANIFESTS:
            raise RegistryError(f"{ref.host} answered {uri} with no image manifest or index.")
        if media_type in INDEXES:
            return Manifest(found, media_type, _platforms(document))
        config = document.get("config")
        blob = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(blob, str) or not _DIGEST.fullmatch(blob):
            return Manifest(found, media_type, ())
        # A blob may live elsewhere (object storage): followed, and checked by its digest.
        config_answer = self._request("GET", f"{base}/blobs/{blob}", ref.host, scope, True)
        config_bytes = _content(config_answer, uri, self._timeout)
        if "sha256:" + hashlib.sha256(config_bytes).hexdigest() != blob:
            raise RegistryError(f"{ref.host} answered a config for {uri} of another digest.")
        image = _json(config_bytes, uri)
        platform = _platform(image)
        return Manifest(found, media_type, (platform,) if platform else ())

    def _request(
        self, method: str, url: str, host: str, scope: str, redirects: bool = False
    ) -> requests.Response:
        """One request, retried; a manifest is asked for where the URI names, never followed
        elsewhere."""
        attempt, challenged = 0, False
        while True:
            headers = {"Accept": _ACCEPT, **self._authorization(host, scope)}
            self.requests += 1
            try:
                answer = self._session.request(
                    method, url, headers=headers, timeout=self._timeout, stream=True,
                    allow_redirects=redirects,
                )  # fmt: skip
            except requests.RequestException as exc:
                if attempt < self._retries:
                    attempt += 1
                    self.retries += 1
                    self._sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                raise UnreachableError(f"{host} did not answer ({type(exc).__name__}).") from None
            if answer.status_code != 200 or method == "HEAD":
                answer.close()  # nothing more to read: the connection goes back to the pool
            if answer.status_code == 401 and not challenged:
                challenged = True
                if self._follow(answer, host, scope):
                    continue
            if (answer.status_code == 429 or answer.status_code >= 500) and attempt < self._retries:
                attempt += 1
                self.retries += 1
                self._sleep(min(_retry_after(answer) or self._backoff * 2 ** (attempt - 1), 30.0))
                continue
            if answer.status_code == 404:
                raise MissingError(f"{host} answered no such image for {url.split('/v2/', 1)[1]}.")
            if answer.status_code == 429 or answer.status_code >= 500:
                asked = "once" if attempt == 0 else f"{attempt + 1} times"
                raise UnreachableError(
                    f"{host} answered HTTP {answer.status_code} for {url.split('/v2/', 1)[1]} "
                    f"(asked {asked})."
                )
            if answer.status_code != 200:
                what = f"HTTP {answer.status_code}"
                hint = ""
                if answer.status_code == 401 and host not in self._credentials:
                    hint = f" (no credentials for {host}: docker login {host} keeps them)"
                raise RegistryError(f"{host} answered {what} for {url.split('/v2/', 1)[1]}{hint}.")
            return answer

    def _authorization(self, host: str, scope: str) -> dict[str, str]:
        token = self._tokens.get((host, scope))
        if token is not None:
            return {"Authorization": f"Bearer {token}"}
        if (host, "basic") in self._tokens and host in self._credentials:
            user, password = self._credentials[host]
            pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            return {"Authorization": f"Basic {pair}"}
        return {}

    def _follow(self, answer: requests.Response, host: str, scope: str) -> bool:
        """Answer a 401's challenge once: fetch a bearer token from its realm (anonymously, or
        with Docker's credentials for the host), or use basic credentials; False when there is
        nothing to try."""
        kind, _, rest = answer.headers.get("WWW-Authenticate", "").partition(" ")
        if kind.lower() == "basic":
            if host not in self._credentials:
                return False
            self._tokens[(host, "basic")] = ""
            return True
        fields = dict(_FIELD.findall(rest))
        realm = fields.get("realm", "")
        try:
            where = urlsplit(realm)
            where.port  # noqa: B018 - a port that is no number raises here
        except ValueError:
            return False
        if kind.lower() != "bearer" or where.scheme not in ("https", "http") or not where.hostname:
            return False
        if "@" in where.netloc or "\\" in realm:  # user info, or a host that parsers read apart
            return False
        params = {"service": fields.get("service", ""), "scope": fields.get("scope", scope)}
        # Credentials travel to a token endpoint over HTTPS only (or to one on this machine).
        safe = where.scheme == "https" or where.hostname in _LOOPBACK
        try:
            found = self._session.get(
                realm, params=params, auth=self._credentials.get(host) if safe else None,
                timeout=self._timeout, stream=True, allow_redirects=False,
            )  # fmt: skip
            body: Any = json.loads(_content(found, realm.split("?")[0], self._timeout))
        except (requests.RequestException, ValueError, RegistryError):
            return False
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if found.status_code != 200 or not isinstance(token, str) or not token:
            return False
        self._tokens[(host, scope)] = token
        return True


def _media_type(headers: Mapping[str, str], document: Any = None, known_type: bool = False) -> str:
    """The manifest's media type: the body's own mediaType where it names one we know, else
    the Content-Type header's."""
    named = document.get("mediaType") if isinstance(document, dict) else None
    if named in INDEXES or named in MANIFESTS:
        return str(named)
    header = headers.get("Content-Type", "").split(";")[0].strip()
    if known_type and header not in INDEXES and header not in MANIFESTS:
        return ""
    return header[:100]


def _content(answer: requests.Response, uri: str, timeout: float) -> bytes:
    """The answer's body: refused beyond MAX_BODY bytes, or when it takes longer than
    ``timeout`` seconds in all to arrive (a registry sending a byte at a time)."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            # read1: what has arrived (up to 64 KiB), so the deadline is checked as bytes come.
            chunk = answer.raw.read1(2**16, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY:
                raise RegistryError(
                    f"The registry's answer for {uri} is over {MAX_BODY // 2**20} MiB."
                )
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"The registry's answer for {uri} took over {timeout:g} s to arrive."
                )
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        raise RegistryError(
            f"The registry's answer for {uri} broke off ({type(exc).__name__})."
        ) from None
    finally:
        answer.close()
    return b"".join(chunks)


def _json(content: bytes, uri: str) -> dict[str, Any]:
    try:
        document = json.loads(content)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise RegistryError(f"The registry's answer for {uri} is not a JSON object.")
    return document


def _platforms(document: dict[str, Any]) -> tuple[str, ...]:
    """os/architecture[/variant] of an index's entries (attestations left out)."""
    listed = document.get("manifests", [])
    entries = listed if isinstance(listed, list) else []
    found = (_platform(entry.get("platform")) for entry in entries if isinstance(entry, dict))
    return tuple(dict.fromkeys(text for text in found if text))


def _platform(described: Any) -> str | None:
    """os/architecture[/variant] of an index entry's platform or an image's config; None for
    an attestation (unknown/unknown) or anything else that names no platform."""
    if not isinstance(described, dict):
        return None
    parts = [described.get(key) for key in ("os", "architecture", "variant")]
    text = "/".join(part for part in parts if isinstance(part, str) and part)
    known = "unknown" not in text.split("/") and _PLATFORM.fullmatch(text)
    return text if known else None


def _retry_after(answer: requests.Response) -> float | None:
    try:
        return max(0.0, float(answer.headers.get("Retry-After", "")))
    except ValueError:
        return None
