"""The HTTP boundary to PAI's AIWorkspace API: endpoints, signing, timeouts, retries, errors."""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from catalog.account import Credentials
from catalog.config import __version__
from catalog.errors import ApiError, AuthError, UsageError
from catalog.parse import records
from catalog.parse.text import visible
from catalog.sync import BACKOFF, RETRIES, TIMEOUT, signer

USER_AGENT = f"pai-image-catalog/{__version__}"
# Never log headers: they carry the STS token. URLs carry only the listing's parameters.
log = logging.getLogger(__name__)
LIST_IMAGES_PATH = "/api/v1/images"
OFFICIAL_LABELS = "system.official=true"

# What to tell the operator for errors that no retry can fix.
AUTH_HINTS = {
    "SignatureDoesNotMatch": "check the AccessKey secret",
    "IncompleteSignature": "check the AccessKey secret",
    "InvalidAccessKeyId.NotFound": "check the AccessKey ID",
    "InvalidAccessKeyId.Inactive": "the AccessKey is disabled; enable it or use another",
    "InvalidTimeStamp.Expired": "check this machine's clock (it must be within 15 minutes of UTC)",
    "SignatureNonceUsed": "a request was replayed; run the sync again",
    "Forbidden.RAM": "grant the RAM identity permission for paiworkspace:ListImages",
    "NoPermission": "grant the RAM identity permission for paiworkspace:ListImages",
    "InvalidSecurityToken.Expired": "the STS token expired; refresh the credentials",
    "InvalidSecurityToken.Mismatch": "the STS token does not belong to this AccessKey",
    "InvalidSecurityToken.Malformed": "the STS token is malformed",
}


@dataclass(frozen=True)
class ClientSettings:
    """How hard to try: timeouts per request, attempts per request, and backoff between them."""

    connect_timeout: float = 5.0
    read_timeout: float = TIMEOUT
    retries: int = RETRIES
    backoff: float = BACKOFF
    backoff_cap: float = 30.0
    pool_size: int = 8
    algorithm: str = signer.ACS3


def endpoint_for(region: str, overrides: Mapping[str, str], *, vpc: bool = False) -> str:
    """The base URL for a region: an override ("" key = any region) or the public/VPC host."""
    url = overrides.get(region) or overrides.get("")
    if url:
        return url.strip().rstrip("/")
    host = "aiworkspace-vpc" if vpc else "aiworkspace"
    return f"https://{host}.{region.strip()}.aliyuncs.com"


def parse_endpoints(values: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``URL`` or ``REGION=URL`` options -> {region or "": URL}; refuses what is not a URL."""
    found: dict[str, str] = {}
    for value in values:
        region, equals, url = value.strip().partition("=")
        if "://" in region or not url:  # no REGION= before the URL: "=" is in the URL itself
            region, url = "", value.strip()
        elif equals and not region.strip():
            raise UsageError(
                f"{_without_user(value)!r} names no region before '='; write REGION=URL."
            )
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (reading it checks it)
        except ValueError:
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(
                f"{_without_user(value)!r} is not an endpoint; give a URL with a scheme, such as "
                "http://127.0.0.1:8123, or REGION=URL."
            )
        if parts.query or parts.fragment or url.endswith(("?", "#")):
            raise UsageError(
                f"The endpoint {_without_user(url)} has a query or a fragment; give the API's "
                "base URL only (scheme, host, port and path)."
            )
        if "@" in parts.netloc:
            # requests would send it as Basic authorization in place of the signature, and a
            # run row (published with the catalog) would keep it.
            raise UsageError(
                f"The endpoint {_without_user(url)} holds a user name or password, which the "
                "API does not take (requests are signed with your access key); remove it."
            )
        key = region.strip().lower()
        if key in found:
            raise UsageError(
                f"Two --endpoint options for {key or 'every region'}; give one per region."
            )
        found[key] = url
    return found


def _without_user(text: str) -> str:
    """``text`` with the user part of any URL in it (``user:password@``) as ``***@``, and its
    query and fragment, which may hold a token, as ``?***`` and ``#***``."""
    text = re.sub(r"(//)[^/\s]*@", r"\1***@", text)
    return re.sub(r"([?#])[^#\s]*", r"\1***", text)


@dataclass
class Counters:
    """Requests and retries, counted across worker threads."""

    requests: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, requests_: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.requests += requests_
            self.retries += retries


def retry_after(response: requests.Response) -> float | None:
    """Seconds the server asked us to wait: x-acs-retry-after (ms) or Retry-After."""
    value = response.headers.get("x-acs-retry-after")
    if value and value.strip().isdigit() and int(value) > 0:
        return int(value) / 1000.0
    value = response.headers.get("Retry-After")
    if value:
        if value.strip().isdigit():
            return float(value)
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None  # neither seconds nor a date: the backoff decides
        if moment is not None:
            return max(0.0, moment.timestamp() - time.time())
    return None


def _throttled(status: int, code: str, wait: float | None) -> bool:
    """Whether an answer asks the client as a whole to slow down, not only this request."""
    return status == 429 or code.startswith("Throttling") or wait is not None


def _retryable(status: int, code: str) -> bool:
    return (
        status == 429
        or status >= 500
        or code.startswith("Throttling")
        or (code == "ServiceUnavailable")
    )


class PaiClient:
    """One signed ``requests.Session`` for one region's endpoint."""

    def __init__(
        self,
        region: str,
        base_url: str,
        credentials: Credentials,
        settings: ClientSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.region = region
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.settings = settings or ClientSettings()
        self.counters = Counters()
        self._sleep = sleep
        # When the server throttles one request, every worker holds its next one until then.
        self._resume_at = 0.0
        self._resume_lock = threading.Lock()
        self._closed = False
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_maxsize=self.settings.pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        # Proxies and the CA bundle from the environment, read once rather than on every
        # request (requests walks the whole environment each time); no .netrc, whose
        # Authorization header would replace the signature.
        found = self._session.merge_environment_settings(self.base_url, {}, None, None, None)
        self._session.proxies, self._session.verify = found["proxies"], found["verify"]
        self._session.trust_env = False
        parts = urlsplit(self.base_url)
        self._host = parts.netloc
        self._prefix = parts.path.rstrip("/")

    @property
    def proxies(self) -> dict[str, str]:
        """The proxies this client's requests go through, read once from the environment."""
        return dict(self._session.proxies)

    def close(self) -> None:
        """Close the connections; a request still under way makes no further attempt."""
        self._closed = True
        self._session.close()

    def list_images_page(self, page_number: int, page_size: int, verbose: bool = True) -> Any:
        """One ListImages page of the official images, oldest first, with labels unless
        ``verbose`` is false (a check of which images are listed needs none)."""
        query = {
            "Labels": OFFICIAL_LABELS,
            "Verbose": "true" if verbose else "false",
            "SortBy": "GmtCreateTime",
            "Order": "ASC",
            "PageNumber": str(page_number),
            "PageSize": str(page_size),
        }
        return self.get(LIST_IMAGES_PATH, query, "ListImages", what=f"page {page_number}")

    def get(self, path: str, query: Mapping[str, str], action: str, *, what: str) -> Any:
        """GET a JSON body; every attempt is signed afresh (the API rejects a reused nonce)."""
        settings = self.settings
        last = "no attempt was made"
        for attempt in range(settings.retries + 1):
            self._hold()
            if self._closed:
                raise ApiError(f"{self.region}: {what} was not asked for: the client is closed.")
            if attempt:
                self.counters.add(retries=1)
            wait: float | None = None
            throttled = False
            headers = signer.sign(
                "GET",
                self._host,
                self._prefix + path,
                query,
                access_key_id=self.credentials.access_key_id,
                access_key_secret=self.credentials.access_key_secret,
                security_token=self.credentials.security_token,
                action=action,
                user_agent=USER_AGENT,
                algorithm=settings.algorithm,
            )
            url = f"{self.base_url}{path}?{signer.canonical_query(query)}"
            self.counters.add(requests_=1)
            try:
                response = self._session.get(
                    url,
                    headers=headers,
                    timeout=(settings.connect_timeout, settings.read_timeout),
                    allow_redirects=False,
                )
            except requests.Timeout:
                last = f"no answer within {settings.read_timeout:g} s"
            except requests.ConnectionError as exc:
                last = f"cannot connect to {self.base_url} ({type(exc).__name__})"
            except requests.RequestException as exc:
                last = f"request failed ({type(exc).__name__})"
            else:
                log.debug(
                    "%s: %s %s attempt %d: HTTP %d", self.region, action, what, attempt + 1,
                    response.status_code,
                )  # fmt: skip
                body, last, wait, throttled = self._outcome(response, what)
                if body is not None:
                    return body
            if attempt < settings.retries:
                delay = self._backoff(attempt, wait)
                log.info("%s: %s: %s; retrying in %.2f s", self.region, what, last, delay)
                if throttled:
                    self._pause(delay)  # this request waits in _hold, with every other one
                else:
                    self._sleep(delay)
        raise ApiError(
            f"{self.region}: {what} failed after {settings.retries + 1} attempts: {last}."
        )

    def _hold(self) -> None:
        """Wait until the pause that throttled requests asked for is over, including any that
        another one extends meanwhile."""
        slept_until = 0.0
        while True:
            with self._resume_lock:
                until = self._resume_at
            left = until - time.monotonic()
            if until <= slept_until or left <= 0:
                return
            self._sleep(left)
            slept_until = until

    def _pause(self, seconds: float) -> None:
        """Hold every request of this client for ``seconds`` (or longer, if already held)."""
        with self._resume_lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def _outcome(
        self, response: requests.Response, what: str
    ) -> tuple[Any, str, float | None, bool]:
        """(body, "", None, False) on success; (None, reason, wait, throttled) when worth
        retrying; else raise."""
        if response.status_code == 200:
            try:
                return records.loads(response.content), "", None, False
            except ValueError as exc:
                return None, f"{what} was not valid JSON ({exc})", None, False
        try:
            error = records.loads(response.content)
        except ValueError:
            error = {}
        error = error if isinstance(error, dict) else {}
        # Quoted in errors and logs: no control character from the server reaches a terminal.
        code = visible(str(error.get("Code") or ""))
        message = visible(str(error.get("Message") or "").strip().rstrip("."))
        label = f"HTTP {response.status_code}" + (f" {code}" if code else "")
        if _retryable(response.status_code, code):
            wait = retry_after(response)
            reason = f"{label}" + (f": {message}" if message else "")
            return None, reason, wait, _throttled(response.status_code, code, wait)
        hint = AUTH_HINTS.get(code)
        if hint is not None or response.status_code in (401, 403):
            raise AuthError(
                f"{self.region}: the API refused the request ({label}); "
                f"{hint or 'check the credentials and their permissions'} "
                f"(credentials from {self.credentials.source or 'an unnamed source'}).",
                code=code or None,
                status=response.status_code,
            )
        detail = f": {message}" if message else ""
        raise ApiError(
            f"{self.region}: {what} failed with {label}{detail}.",
            code=code or None,
            status=response.status_code,
        )

    def _backoff(self, attempt: int, server_wait: float | None) -> float:
        """Exponential backoff with full jitter, never shorter than what the server asked."""
        ceiling = min(self.settings.backoff_cap, self.settings.backoff * (2**attempt))
        jittered = random.uniform(0, ceiling)
        if server_wait is not None:
            return min(max(server_wait, jittered), max(self.settings.backoff_cap, server_wait))
        return jittered
