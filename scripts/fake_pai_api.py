"""A fake PAI AIWorkspace ListImages API on loopback that checks signatures with the official SDK.

One server serves one region (a request to 127.0.0.1 carries no usable region, so tests that
sync several regions start one server per region and point each region's endpoint at it).

Endpoints: ``GET /api/v1/images`` (ListImages: PageNumber, PageSize, Labels ANDed, Verbose,
SortBy=GmtCreateTime, Order ASC/DESC, Name and Query substrings) and ``GET /api/v1/images/{id}``
(GetImage, body without ImageId). Anything else is a 404 ``InvalidAction.NotFound``.

Authentication, checked before any fault except latency: ``Authorization`` is ACS3-HMAC-SHA256
or ROA ``acs <id>:<sig>``; ``x-acs-action``, ``x-acs-version``, ``x-acs-signature-nonce`` and a
date (ACS3: ``x-acs-date``; ROA: ``date`` or ``x-acs-date``) must be present; ACS3 must sign
``host`` and every ``x-acs-*`` header sent. Codes: IncompleteSignature (400),
InvalidAccessKeyId.NotFound (404), InvalidTimeStamp.Format/Expired (400, 15 minutes of skew),
SignatureDoesNotMatch (400), InvalidSecurityToken.MismatchWithAccessKey (400: a token missing,
wrong, or sent to a server configured without one), SignatureNonceUsed (400; only nonces of
valid requests are remembered), then InvalidAction.NotFound / InvalidVersion for an
``x-acs-action`` / ``x-acs-version`` that does not fit the path.

Faults (``Faults``, mutable while serving). ``*_first`` fields are budgets: each request that
suffers one decrements it, so setting ``throttle_first = 2`` mid-test hits the next two requests.
Per authenticated request, the first that applies wins, so budgets chain (a throttling storm,
then 5xx, then a malformed body): always_error, throttle_first, throttle_every (every Nth
authenticated request), error_5xx_first (500, 502, 503 in turn), malformed_first (200 with an
HTML body labelled JSON), truncated_first (200, JSON cut in half, Content-Length of the cut).
hang_first delays the answer by hang_seconds on top of that; latency delays every response.
Throttling is HTTP throttle_status with Code Throttling.User (400, 429) or ServiceUnavailable
(503), plus ``x-acs-retry-after: <retry_after_ms>`` when set. page_size_cap silently shortens
pages (offsets use the capped size; TotalCount is unchanged); page_size_limit refuses a larger
PageSize with 400 InvalidParameter.PageSize instead. drift_after=K applies drift once,
after K ListImages pages were served: drift_delete images go from the front of the ASC order,
drift_insert new ones are added with the newest GmtCreateTime.

More faults, for the reliability suite: reset_first closes the connection without an answer
(an RST, before any byte of the response); wrong_content_type_first labels a correct JSON
body text/html; duplicate_first makes the next ListImages pages after page 1 repeat page 1's
first image in place of their own last one (an ImageId listed twice, another missing, every
count right); total_count_lie adds N (or takes -N) to every TotalCount; missing_fields drops
those fields from every image served; zero_images serves an empty listing. ``listing()`` is
what a complete crawl should now store.

CLI: ``python scripts/fake_pai_api.py --port 8123 (--snapshot data/snapshot --region R |
--images N) [--throttle-every 3 --drift-after 2 ...]`` prints the base URL on stdout and the
credentials to export on stderr, then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import calendar
import copy
import dataclasses
import email.utils
import hashlib
import hmac
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest

API_VERSION = "2021-02-04"
ACS3 = "ACS3-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

ERRORS: dict[str, tuple[int, str]] = {
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "SignatureDoesNotMatch": (400, "Specified signature does not match our calculation."),
    "InvalidSecurityToken.MismatchWithAccessKey": (400, "The security token does not match."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidAction.NotFound": (404, "Specified api is not found, please check your url."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "InvalidParameter": (400, "The specified parameter is not valid."),
    "InvalidParameter.PageSize": (400, "The specified PageSize is too large."),
    "ImageNotFound": (404, "The specified image does not exist."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "InternalError": (500, "The request processing has failed due to some unknown error."),
    "BadGateway": (502, "The gateway received an invalid response."),
}
_5XX = ("InternalError", "BadGateway", "ServiceUnavailable")
_ACS3_AUTH = re.compile(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=\w+")
_ROA_AUTH = re.compile(r"acs ([^:\s]+):(\S+)")
_REQUIRED = ("x-acs-action", "x-acs-version", "x-acs-signature-nonce")


@dataclass
class Faults:
    latency: float = 0.0
    page_size_cap: int | None = None
    page_size_limit: int | None = None
    throttle_every: int = 0
    throttle_first: int = 0
    throttle_status: int = 400
    retry_after_ms: int | None = None
    error_5xx_first: int = 0
    malformed_first: int = 0
    truncated_first: int = 0
    hang_first: int = 0
    hang_seconds: float = 5.0
    drift_after: int | None = None
    drift_insert: int = 0
    drift_delete: int = 0
    always_error: str | None = None
    reset_first: int = 0
    wrong_content_type_first: int = 0
    duplicate_first: int = 0
    total_count_lie: int = 0
    missing_fields: tuple[str, ...] = ()
    zero_images: bool = False


@dataclass
class RequestLog:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int
    code: str | None
    region: str
    time: float


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None


def parse_time(stamp: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(stamp, ISO_FORMAT)))
    except ValueError:
        pass
    try:  # ROA sends an RFC 1123 `date` header instead of x-acs-date
        return email.utils.parsedate_to_datetime(stamp).timestamp()
    except (TypeError, ValueError):
        return None


def verify(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    access_key_id: str = "test-ak",
    access_key_secret: str = "test-secret",
    security_token: str | None = None,
    body: bytes = b"",
    now: float | None = None,
    seen_nonces: set[str] | None = None,
) -> str | None:
    """Return the error Code the service would give this request, or None if it is valid.

    ``query`` holds decoded values; the signature is recomputed by the official SDK's own
    ``Utils.get_authorization`` (ACS3) or ``get_string_to_sign``/``get_roasignature`` (ROA).
    """
    h = {k.lower(): v for k, v in headers.items()}
    auth = h.get("authorization", "").strip()
    acs3, roa = _ACS3_AUTH.fullmatch(auth), _ROA_AUTH.fullmatch(auth)
    if acs3:
        key_id, stamp, given = acs3.group(1), h.get("x-acs-date"), auth
        required: tuple[str, ...] = (*_REQUIRED, "x-acs-content-sha256")
    elif roa:
        key_id, stamp, given = roa.group(1), h.get("x-acs-date") or h.get("date"), roa.group(2)
        required = _REQUIRED
    else:
        return "IncompleteSignature"
    if not stamp or not all(h.get(name) for name in required):
        return "IncompleteSignature"
    request = DaraRequest()
    request.method, request.pathname, request.query = method, path, dict(query)
    if acs3:
        names = acs3.group(2).split(";")
        # Without host and every x-acs-* header in the signature, a captured request could be
        # replayed with a fresh nonce or date, so the gateway refuses such a signature outright.
        unsigned = {"host", *(k for k in h if k.startswith("x-acs-"))} - set(names)
        if unsigned or any(name not in h for name in names):
            return "IncompleteSignature"
    if key_id != access_key_id:
        return "InvalidAccessKeyId.NotFound"
    when = parse_time(stamp)
    if when is None:
        return "InvalidTimeStamp.Format"
    if abs((time.time() if now is None else now) - when) > MAX_SKEW_SECONDS:
        return "InvalidTimeStamp.Expired"
    if acs3:
        request.headers = {name: h[name] for name in names}
        payload = Utils.hash(body, ACS3).hex()
        expected = Utils.get_authorization(request, ACS3, payload, key_id, access_key_secret)
    else:
        request.headers = h
        string_to_sign = Utils.get_string_to_sign(request)
        expected = Utils.get_roasignature(string_to_sign, access_key_secret)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        return "SignatureDoesNotMatch"
    if h.get("x-acs-security-token") != security_token:
        return "InvalidSecurityToken.MismatchWithAccessKey"
    if seen_nonces is not None:
        if h["x-acs-signature-nonce"] in seen_nonces:
            return "SignatureNonceUsed"
        seen_nonces.add(h["x-acs-signature-nonce"])
    return None


def _json_reply(status: int, body: dict[str, Any], code: str | None = None) -> _Reply:
    request_id = str(uuid.uuid4()).upper()
    data = json.dumps({"RequestId": request_id, **body}, ensure_ascii=False).encode()
    return _Reply(status, data, {"x-acs-request-id": request_id}, code)


def _error(code: str, status: int | None = None, headers: dict[str, str] | None = None) -> _Reply:
    default_status, message = ERRORS.get(code, (400, f"The request failed with {code}."))
    body = {"HostId": "aiworkspace.aliyuncs.com", "Code": code, "Message": message}
    body["Recommend"] = f"https://api.aliyun.com/troubleshoot?q={code}"
    reply = _json_reply(status or default_status, body, code)
    reply.headers.update(headers or {})
    return reply


def _matches(image: dict[str, Any], query: Mapping[str, str]) -> bool:
    labels = {label.get("Key"): label.get("Value") for label in image.get("Labels") or []}
    for term in filter(None, query.get("Labels", "").split(",")):
        key, has_value, value = term.partition("=")
        if key not in labels or (has_value and labels[key] != value):
            return False
    name = (image.get("Name") or "").lower()
    text = f"{name} {(image.get('Description') or '').lower()}"
    return query.get("Name", "").lower() in name and query.get("Query", "").lower() in text


def _present(image: dict[str, Any], verbose: bool, missing: tuple[str, ...] = ()) -> dict[str, Any]:
    shown = copy.deepcopy(image)
    if not verbose:
        shown.pop("Labels", None)
    for name in missing:
        shown.pop(name, None)
    return shown


class _Reset(Exception):
    """The reply is no reply: drop the connection."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so Content-Length has to be right
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK, 40 ms a response on loopback. Latency is the `latency` fault's job.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self.server.api._handle(self)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.api.log:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must not block stop()
    # The stock backlog of 5 drops the connections that many workers open at once, and each
    # dropped SYN costs the client a second: that would be the server's limit, not the client's.
    request_queue_size = 128
    api: FakePaiApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed or timed out mid-request is a test's doing, not a server bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakePaiApi:
    """One region's ListImages/GetImage on 127.0.0.1; ``images_by_region`` has exactly one key."""

    def __init__(
        self,
        images_by_region: dict[str, list[dict[str, Any]]],
        *,
        access_key_id: str = "test-ak",
        access_key_secret: str = "test-secret",
        security_token: str | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log: bool = False,
    ) -> None:
        if len(images_by_region) != 1:
            raise ValueError("FakePaiApi serves exactly one region: start one server per region.")
        ((self.region, images),) = images_by_region.items()
        # Stable sort: snapshot images often lack GmtCreateTime and keep their file order.
        self._images = sorted(copy.deepcopy(images), key=lambda i: i.get("GmtCreateTime") or "")
        self._keys: dict[str, Any] = {
            "access_key_id": access_key_id,
            "access_key_secret": access_key_secret,
            "security_token": security_token,
        }
        self.faults = faults or Faults()
        self.requests: list[RequestLog] = []
        self.log = log
        self._lock = threading.Lock()
        self._nonces: set[str] = set()
        self._authenticated = 0
        self._pages_served = 0
        self._drifted = False
        self._errors_5xx = 0
        self._server = _Server((host, port), _Handler)
        self._server.api = self
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def start(self) -> FakePaiApi:
        # A short poll interval: shutdown() waits for it, and tests start many servers.
        poll = {"poll_interval": 0.05}
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs=poll, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakePaiApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def images(self, region: str | None = None) -> list[dict[str, Any]]:
        if region not in (None, self.region):
            raise KeyError(region)
        with self._lock:
            return copy.deepcopy(self._images)

    def edit(self, index: int, **fields: Any) -> dict[str, Any]:
        """Change fields of the image served at ``index`` (in GmtCreateTime order); a copy of
        the image as it is now served."""
        with self._lock:
            self._images[index].update(fields)
            return copy.deepcopy(self._images[index])

    def listing(self) -> list[dict[str, Any]]:
        """The official images a complete crawl should store now, as ListImages shows them."""
        if self.faults.zero_images:
            return []
        with self._lock:
            matches = [i for i in self._images if _matches(i, {"Labels": "system.official=true"})]
        return [_present(i, True, tuple(self.faults.missing_fields)) for i in matches]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        body = handler.rfile.read(int(headers.get("content-length") or 0))
        try:
            reply = self._respond(handler.command, url.path, query, headers, body)
        except _Reset:
            # SO_LINGER 0: close() sends an RST instead of a FIN, as a crashed proxy would.
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.close_connection = True
            handler.connection.close()
            return
        time.sleep(self.faults.latency)
        with self._lock:
            entry = (url.path, query, headers, reply.status, reply.code, self.region, time.time())
            self.requests.append(RequestLog(handler.command, *entry))
        try:
            handler.send_response(reply.status)
            reply.headers.setdefault("Content-Type", "application/json;charset=utf-8")
            for name, value in {**reply.headers, "Content-Length": str(len(reply.body))}.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a hang fault) before the answer came

    def _respond(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> _Reply:
        prefix = "/api/v1/images/"
        image_id = path.removeprefix(prefix) if path.startswith(prefix) else ""
        action = "GetImage" if image_id else "ListImages" if path == "/api/v1/images" else None
        if method != "GET" or action is None or "/" in image_id:
            return _error("InvalidAction.NotFound")
        with self._lock:
            code = verify(
                method, path, query, headers, body=body, seen_nonces=self._nonces, **self._keys
            )
        if code is None and headers["x-acs-action"] != action:
            code = "InvalidAction.NotFound"
        if code is None and headers["x-acs-version"] != API_VERSION:
            code = "InvalidVersion"
        if code is not None:
            return _error(code)
        faults = self.faults
        with self._lock:
            self._authenticated += 1
            hang, fault, truncate = faults.hang_first > 0, self._take_fault(), False
            relabel = False
            if hang:
                faults.hang_first -= 1
            if fault is None and faults.truncated_first > 0:
                faults.truncated_first -= 1
                truncate = True
            elif fault is None and faults.wrong_content_type_first > 0:
                faults.wrong_content_type_first -= 1
                relabel = True
        if hang:
            time.sleep(faults.hang_seconds)
        if fault is not None:
            return fault
        reply = self._get_image(image_id, query) if image_id else self._list_images(query)
        if truncate:
            reply.body = reply.body[: len(reply.body) // 2]
        if relabel:
            reply.headers["Content-Type"] = "text/html; charset=utf-8"
        return reply

    def _take_fault(self) -> _Reply | None:
        """Pick the fault for this request and spend its budget; the caller holds the lock."""
        f = self.faults
        if f.reset_first > 0:
            f.reset_first -= 1
            raise _Reset
        if f.always_error:
            if f.always_error.startswith("Throttling") or f.always_error == "ServiceUnavailable":
                return self._throttle(f.always_error)
            return _error(f.always_error)
        if f.throttle_first > 0:
            f.throttle_first -= 1
            return self._throttle()
        if f.throttle_every and self._authenticated % f.throttle_every == 0:
            return self._throttle()
        if f.error_5xx_first > 0:
            f.error_5xx_first -= 1
            self._errors_5xx += 1
            return _error(_5XX[(self._errors_5xx - 1) % len(_5XX)])
        if f.malformed_first > 0:
            f.malformed_first -= 1
            # Gateways answer with HTML error pages; the content type does not say so.
            return _Reply(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>")
        return None

    def _throttle(self, code: str | None = None) -> _Reply:
        status = self.faults.throttle_status
        code = code or ("ServiceUnavailable" if status == 503 else "Throttling.User")
        retry = self.faults.retry_after_ms
        return _error(code, status, {} if retry is None else {"x-acs-retry-after": str(retry)})

    def _get_image(self, image_id: str, query: dict[str, str]) -> _Reply:
        with self._lock:
            found = [i for i in self._images if i.get("ImageId") == image_id]
        if not found:
            return _error("ImageNotFound")
        verbose = query.get("Verbose", "").lower() == "true"
        shown = _present(found[0], verbose, tuple(self.faults.missing_fields))
        shown.pop("ImageId", None)  # GetImage's body has no ImageId field
        return _json_reply(200, shown)

    def _list_images(self, query: dict[str, str]) -> _Reply:
        try:
            page, size = int(query.get("PageNumber", "1")), int(query.get("PageSize", "20"))
        except ValueError:
            return _error("InvalidParameter")
        order = query.get("Order", "ASC").upper()
        if page < 1 or size < 1 or order not in ("ASC", "DESC"):
            return _error("InvalidParameter")
        limit = self.faults.page_size_limit
        if limit is not None and size > limit:
            return _error("InvalidParameter.PageSize")
        if query.get("SortBy", "GmtCreateTime") != "GmtCreateTime":
            return _error("InvalidParameter")
        faults = self.faults
        with self._lock:
            self._maybe_drift()
            self._pages_served += 1
            matches = [i for i in self._images if _matches(i, query)]
            duplicate = page > 1 and faults.duplicate_first > 0
            if duplicate:
                faults.duplicate_first -= 1
        if faults.zero_images:
            matches = []
        if order == "DESC":
            matches.reverse()
        if faults.page_size_cap is not None:
            size = min(size, faults.page_size_cap)
        verbose = query.get("Verbose", "").lower() == "true"
        missing = tuple(faults.missing_fields)
        chunk = [_present(i, verbose, missing) for i in matches[(page - 1) * size : page * size]]
        if duplicate and chunk and matches:
            chunk[-1] = _present(matches[0], verbose, missing)
        total = len(matches) + faults.total_count_lie
        return _json_reply(200, {"TotalCount": total, "Images": chunk})

    def _maybe_drift(self) -> None:
        f = self.faults
        if self._drifted or f.drift_after is None or self._pages_served < f.drift_after:
            return
        self._drifted = True
        del self._images[: f.drift_delete]
        stamps = [i["GmtCreateTime"] for i in self._images if i.get("GmtCreateTime")]
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        newest = datetime.strptime(max(stamps), ISO_FORMAT) if stamps else now
        # seed=-1: ImageIds differ from those of the default synthetic listing (seed 0)
        for n, image in enumerate(synthetic_images(f.drift_insert, self.region, seed=-1), 1):
            image["GmtCreateTime"] = (newest + timedelta(minutes=n)).strftime(ISO_FORMAT)
            self._images.append(image)


# (repository, framework label, versions, PyTorch versions when the image bundles one)
_FAMILIES = [
    ("pytorch", "PyTorch", ["1.12", "2.1", "2.3.1", "2.5.1", "2.7.0", "2.8.0"], []),
    ("pytorch-training", "PyTorch", ["1.12PAI", "2.4", "2.7"], []),
    ("tensorflow", "TensorFlow", ["1.15PAI", "2.11", "2.14.1", "2.16.1"], []),
    ("tensorflow-training", "TensorFlow", ["1.15PAI", "2.11"], []),
    ("xgboost", "XGBoost", ["1.6.0", "1.7.6", "2.0.3"], []),
    ("modelscope", "ModelScope", ["1.20.0", "1.23.0", "1.31.0"], ["2.4.0", "2.5.1", "2.8.0"]),
    ("deepspeed-training", "DeepSpeed", ["0.8.2", "0.14.4", "0.16.1"], ["1.13", "2.3.1"]),
]


def synthetic_images(n: int, region: str = "cn-hangzhou", seed: int = 0) -> list[dict[str, Any]]:
    """``n`` official-looking images with ascending GmtCreateTime; the same for the same seed."""
    rng = random.Random(f"{region}/{seed}")
    created = datetime(2021, 1, 1, tzinfo=timezone.utc)
    images: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i in range(n):
        repo, framework, versions, torches = rng.choice(_FAMILIES)
        version, python = rng.choice(versions), rng.choice(["3.8", "3.9", "3.10", "3.11", "3.12"])
        gpu = framework != "XGBoost" and rng.random() < 0.75
        cuda, ubuntu = rng.choice(["11.8", "12.1", "12.4", "12.8"]), rng.choice(["20.04", "22.04"])
        torch = rng.choice(torches) if torches else None
        bundled, chip = f"-pytorch{torch}" if torch else "", "gpu" if gpu else "cpu"
        accel = f"-cu{cuda.replace('.', '')}" if gpu else ""
        tag = f"{version}{bundled}-{chip}-py{python.replace('.', '')}{accel}-ubuntu{ubuntu}"
        if f"{repo}:{tag}" in seen:
            tag += f"-{i}"  # a rebuild, the way PAI suffixes its tags
        seen.add(f"{repo}:{tag}")
        created += timedelta(hours=rng.randint(6, 72), seconds=rng.randint(0, 3599))
        labels = {"system.official": "true", "system.origin": "PAI"}
        for product in rng.sample(["dlc", "eas", "dsw"], rng.randint(1, 3)):
            labels[f"system.supported.{product}"] = "true"
        labels |= {"system.chipType": "GPU" if gpu else "CPU", "system.pythonVersion": python}
        labels[f"system.framework.{framework}"] = version
        if torch:
            labels["system.framework.PyTorch"] = torch
        if gpu:
            labels["system.dsw.cudaVersion"] = cuda
        labels |= {"system.dsw.os": "ubuntu", "system.dsw.osVersion": ubuntu}
        digest = hashlib.sha256(f"{region}/{seed}/{i}".encode()).hexdigest()
        images.append(
            {
                "ImageId": f"image-{digest[:18]}",
                "Name": f"{repo}:{tag}",
                "Description": f"Official {framework} {version} image ({'GPU' if gpu else 'CPU'})",
                "ImageUri": f"dsw-registry.{region}.cr.aliyuncs.com/pai/{repo}:{tag}",
                "Accessibility": "PUBLIC",
                "GmtCreateTime": created.strftime(ISO_FORMAT),
                "GmtModifiedTime": (created + timedelta(days=3)).strftime(ISO_FORMAT),
                "Size": rng.randint(2, 30) * 1024**3 + rng.randint(0, 1024**3),
                "Labels": [{"Key": k, "Value": v} for k, v in labels.items()],
            }
        )
    return images


def load_snapshot(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Read ``<directory>/<region>.json`` ListImages bodies into ``{region: Images}``."""
    snapshot = {}
    for path in sorted(Path(directory).glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        snapshot[path.stem] = body["Images"] if isinstance(body, dict) else body
    return snapshot


_OPTIONAL_INTS = {"page_size_cap", "page_size_limit", "retry_after_ms", "drift_after"}


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    parser.add_argument("--region", default="cn-hangzhou")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--snapshot", type=Path, help="directory of <region>.json bodies")
    source.add_argument("--images", type=int, default=100, help="synthetic images to serve")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--access-key-id", default="test-ak")
    parser.add_argument("--access-key-secret", default="test-secret")
    parser.add_argument("--security-token")
    parser.add_argument("--log", action="store_true", help="log each request on stderr")
    for spec in dataclasses.fields(Faults):
        option = f"--{spec.name.replace('_', '-')}"
        if isinstance(spec.default, bool):
            parser.add_argument(option, action="store_true")
            continue
        if isinstance(spec.default, tuple):  # --missing-fields Labels,GmtCreateTime
            parser.add_argument(option, default=spec.default, type=_names)
            continue
        kind = int if spec.name in _OPTIONAL_INTS else str if spec.default is None else None
        choices = [400, 429, 503] if spec.name == "throttle_status" else None
        parser.add_argument(
            option, default=spec.default, type=kind or type(spec.default), choices=choices
        )
    args = parser.parse_args(argv)
    if args.snapshot:
        snapshot = load_snapshot(args.snapshot)
        if args.region not in snapshot:
            parser.error(f"no {args.region}.json in {args.snapshot}; have: {sorted(snapshot)}")
        images = snapshot[args.region]
    else:
        images = synthetic_images(args.images, args.region, args.seed)
    faults = Faults(**{spec.name: getattr(args, spec.name) for spec in dataclasses.fields(Faults)})
    keys = {"access_key_id": args.access_key_id, "access_key_secret": args.access_key_secret}
    api = FakePaiApi(
        {args.region: images},
        **keys,
        security_token=args.security_token,
        faults=faults,
        host=args.host,
        port=args.port,
        log=args.log,
    )
    print(api.url, flush=True)
    print(f"export ALIBABA_CLOUD_ACCESS_KEY_ID={args.access_key_id}", file=sys.stderr)
    print(f"export ALIBABA_CLOUD_ACCESS_KEY_SECRET={args.access_key_secret}", file=sys.stderr)
    if args.security_token:
        print(f"export ALIBABA_CLOUD_SECURITY_TOKEN={args.security_token}", file=sys.stderr)
    print(f"serving {len(images)} {args.region} images; Ctrl-C stops", file=sys.stderr)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    api.start()
    try:
        while not stopping.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()


if __name__ == "__main__":
    main()
