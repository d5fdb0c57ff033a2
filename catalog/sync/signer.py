"""Request signing for the PAI OpenAPI: ACS3-HMAC-SHA256 and the older ROA HMAC-SHA1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import quote

ACS3 = "ACS3-HMAC-SHA256"
ROA = "ROA-HMAC-SHA1"
API_VERSION = "2021-02-04"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(value: str) -> str:
    """Encode per RFC 3986: unreserved characters kept, every other UTF-8 byte as ``%XX``."""
    # safe="" because quote() otherwise keeps "/", which the service expects encoded.
    return quote(value, safe="")


def canonical_query(query: Mapping[str, str]) -> str:
    """The sorted, encoded query string: it is both signed and sent as the URL's query."""
    return "&".join(
        f"{percent_encode(key)}={percent_encode(value)}" for key, value in sorted(query.items())
    )


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased; two spellings of one name would make the signature ambiguous."""
    result: dict[str, str] = {}
    for name, value in headers.items():
        key = name.strip().lower()
        if key in result:
            raise ValueError(f"Header {key!r} is given twice; pass each header once.")
        result[key] = value
    return result


def acs3_canonical_request(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    """Step 4 of ACS3 signing; every header given is signed."""
    lowered = _lowered(headers)
    names = sorted(lowered)
    canonical_headers = "".join(f"{name}:{lowered[name].strip()}\n" for name in names)
    # GET bodies are empty; the header, when present, is what the server hashes against.
    hashed_body = lowered.get("x-acs-content-sha256", EMPTY_SHA256)
    return "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query(query),
            canonical_headers,
            ";".join(names),
            hashed_body,
        ]
    )


def acs3_string_to_sign(canonical_request: str) -> str:
    """The algorithm name and the hex SHA-256 of the canonical request."""
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{ACS3}\n{digest}"


def acs3_authorization(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
) -> str:
    """The ``Authorization`` value for an ACS3-HMAC-SHA256 request."""
    canonical = acs3_canonical_request(method, path, query, headers)
    signature = hmac.new(
        access_key_secret.encode("utf-8"),
        acs3_string_to_sign(canonical).encode("utf-8"),
        hashlib.sha256,
    ).hexdigest()
    signed_headers = ";".join(sorted(_lowered(headers)))
    return f"{ACS3} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"


def _roa_resource(path: str, query: Mapping[str, str]) -> str:
    # ROA signs the decoded values, and a bare key for an empty value, as the official SDK does.
    if not query:
        return path
    pairs = (key if value == "" else f"{key}={value}" for key, value in sorted(query.items()))
    return f"{path}?{'&'.join(pairs)}"


def roa_string_to_sign(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
) -> str:
    """Fixed headers, then the sorted ``x-acs-*`` headers, then the path and decoded query."""
    lowered = _lowered(headers)
    fixed = [method.upper()] + [
        lowered.get(name, "") for name in ("accept", "content-md5", "content-type", "date")
    ]
    acs = "".join(
        f"{name}:{lowered[name]}\n" for name in sorted(lowered) if name.startswith("x-acs-")
    )
    return "\n".join(fixed) + "\n" + acs + _roa_resource(path, query)


def roa_authorization(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
) -> str:
    """The ``Authorization`` value for a ROA HMAC-SHA1 request."""
    digest = hmac.new(
        access_key_secret.encode("utf-8"),
        roa_string_to_sign(method, path, query, headers).encode("utf-8"),
        hashlib.sha1,
    ).digest()
    return f"acs {access_key_id}:{base64.b64encode(digest).decode('ascii')}"


def _utc(date: datetime | None) -> datetime:
    if date is None:
        return datetime.now(timezone.utc)
    if date.tzinfo is None:
        # A naive time is usually local time; guessing would skew the signature by hours.
        raise ValueError("The signing date has no time zone; pass an aware datetime.")
    return date.astimezone(timezone.utc)


def sign(
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    *,
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None,
    action: str,
    user_agent: str | None = None,
    algorithm: str = ACS3,
    date: datetime | None = None,
    nonce: str | None = None,
    version: str = API_VERSION,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every header to send with one request, ``authorization`` included; sign each try afresh."""
    if algorithm not in (ACS3, ROA):
        raise ValueError(f"Unknown signature algorithm {algorithm!r}; use {ACS3!r} or {ROA!r}.")
    when = _utc(date)
    headers = {
        "accept": "application/json",
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        # The service rejects a nonce it has seen, so each call needs a new one.
        "x-acs-signature-nonce": uuid.uuid4().hex if nonce is None else nonce,
    }
    if algorithm == ACS3:
        headers["x-acs-date"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        headers["x-acs-content-sha256"] = EMPTY_SHA256
    else:
        headers["date"] = format_datetime(when, usegmt=True)
        headers["x-acs-signature-method"] = "HMAC-SHA1"
        headers["x-acs-signature-version"] = "1.0"
    if user_agent is not None:
        headers["user-agent"] = user_agent
    # An empty token (say, an exported but blank variable) means plain AccessKey credentials.
    if security_token:
        headers["x-acs-accesskey-id"] = access_key_id
        headers["x-acs-security-token"] = security_token
    for name, value in (extra_headers or {}).items():
        key = name.strip().lower()
        if key in headers or key == "authorization":
            raise ValueError(f"Extra header {key!r} would replace one sign() sets; leave it out.")
        headers[key] = value
    authorize = acs3_authorization if algorithm == ACS3 else roa_authorization
    headers["authorization"] = authorize(
        method, path, query, headers, access_key_id, access_key_secret
    )
    return headers
