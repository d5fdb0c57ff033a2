"""Signer: every shared vector byte for byte, percent-encoding edges, and sign()'s header set."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog.sync import signer
from tests.conftest import FIXTURES

VECTORS_PATH = FIXTURES / "signing-vectors.json"
VECTOR_DATE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
SECRET = "testsecret"


def _vector_params() -> list[Any]:
    vectors = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["vectors"]
    return [pytest.param(vector, id=vector["name"]) for vector in vectors]


VECTORS = _vector_params()


def _request(vector: dict[str, Any]) -> tuple[str, str, dict[str, str], dict[str, str]]:
    return vector["method"], vector["path"], vector["query"], vector["headers_signed_and_sent"]


@pytest.mark.parametrize("vector", VECTORS)
def test_vector_string_to_sign(vector: dict[str, Any]) -> None:
    method, path, query, headers = _request(vector)
    if vector["algorithm"] == signer.ACS3:
        canonical = signer.acs3_canonical_request(method, path, query, headers)
        assert canonical == vector["canonical_request"]
        assert signer.acs3_string_to_sign(canonical) == vector["string_to_sign"]
    else:
        assert vector["algorithm"] == signer.ROA
        assert vector["canonical_request"] is None
        assert signer.roa_string_to_sign(method, path, query, headers) == vector["string_to_sign"]


@pytest.mark.parametrize("vector", VECTORS)
def test_vector_authorization(vector: dict[str, Any]) -> None:
    authorize = (
        signer.acs3_authorization
        if vector["algorithm"] == signer.ACS3
        else signer.roa_authorization
    )
    method, path, query, headers = _request(vector)
    key_id, secret = vector["access_key_id"], vector["access_key_secret"]
    assert authorize(method, path, query, headers, key_id, secret) == vector["authorization"]


@pytest.mark.parametrize("vector", VECTORS)
def test_sign_reproduces_vector_headers(vector: dict[str, Any]) -> None:
    headers = vector["headers_signed_and_sent"]
    provider = headers.get("x-acs-credentials-provider")
    signed = signer.sign(
        vector["method"],
        vector["host"],
        vector["path"],
        vector["query"],
        access_key_id=vector["access_key_id"],
        access_key_secret=vector["access_key_secret"],
        security_token=vector["security_token"],
        action=headers["x-acs-action"],
        user_agent=headers.get("user-agent"),
        algorithm=vector["algorithm"],
        date=VECTOR_DATE,
        nonce=headers["x-acs-signature-nonce"],
        extra_headers={"x-acs-credentials-provider": provider} if provider else None,
    )
    assert signed == {**headers, "authorization": vector["authorization"]}


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("a b", "a%20b"),
        ("a+b", "a%2Bb"),
        ("a/b", "a%2Fb"),
        ("k=v", "k%3Dv"),
        ("x,y", "x%2Cy"),
        ("~", "~"),
        ("*", "%2A"),
        ("%", "%25"),
        ("AZaz09-_.~", "AZaz09-_.~"),
        ("é", "%C3%A9"),
        ("镜像", "%E9%95%9C%E5%83%8F"),
        ("", ""),
    ],
)
def test_percent_encode(raw: str, encoded: str) -> None:
    assert signer.percent_encode(raw) == encoded


@given(st.text())
def test_percent_encode_round_trips_with_only_unreserved_or_escapes(raw: str) -> None:
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates are not text a caller can send
    encoded = signer.percent_encode(raw)
    assert re.fullmatch(r"(?:[A-Za-z0-9\-_.~]|%[0-9A-F]{2})*", encoded)
    assert unquote(encoded) == raw


def test_canonical_query_sorts_and_encodes_keys_and_values() -> None:
    query = {"b key": "1 2", "A": "x/y", "Empty": ""}
    assert signer.canonical_query(query) == "A=x%2Fy&Empty=&b%20key=1%202"
    assert signer.canonical_query({}) == ""


def test_acs3_header_names_fold_case_and_values_are_trimmed() -> None:
    lower = signer.acs3_canonical_request("get", "/p", {}, {"host": "h", "x-acs-a": "v"})
    mixed = signer.acs3_canonical_request("GET", "/p", {}, {"Host": " h ", "X-Acs-A": "v "})
    assert lower == mixed == f"GET\n/p\n\nhost:h\nx-acs-a:v\n\nhost;x-acs-a\n{signer.EMPTY_SHA256}"


def test_headers_given_twice_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"^Header 'host' is given twice; pass each header once\.$"
    ):
        signer.acs3_canonical_request("GET", "/", {}, {"host": "a", "Host": "b"})


def test_roa_resource_without_query_and_with_an_empty_value() -> None:
    headers = {"accept": "application/json", "date": "D", "x-acs-b": "2", "x-acs-a": "1"}
    assert signer.roa_string_to_sign("GET", "/p", {}, headers) == (
        "GET\napplication/json\n\n\nD\nx-acs-a:1\nx-acs-b:2\n/p"
    )
    assert signer.roa_string_to_sign("GET", "/p", {"B": "", "A": "a=b"}, {}).endswith(
        "\n\n\n\n\n/p?A=a=b&B"
    )


def _sign(**overrides: Any) -> dict[str, str]:
    arguments: dict[str, Any] = {
        "access_key_id": "testid",
        "access_key_secret": SECRET,
        "security_token": None,
        "action": "ListImages",
    }
    arguments.update(overrides)
    return signer.sign("GET", "example.test", "/api/v1/images", {"PageSize": "50"}, **arguments)


def test_sign_converts_an_aware_date_to_utc() -> None:
    beijing = datetime(2024, 1, 2, 11, 4, 5, tzinfo=timezone(timedelta(hours=8)))
    assert _sign(date=beijing)["x-acs-date"] == "2024-01-02T03:04:05Z"
    assert _sign(date=beijing, algorithm=signer.ROA)["date"] == "Tue, 02 Jan 2024 03:04:05 GMT"


def test_sign_refuses_a_naive_date() -> None:
    with pytest.raises(ValueError, match=r"^The signing date has no time zone; pass an aware"):
        _sign(date=datetime(2024, 1, 2, 3, 4, 5))


def test_sign_makes_a_fresh_nonce_and_date_each_call() -> None:
    first, second = _sign(), _sign()
    assert re.fullmatch(r"[0-9a-f]{32}", first["x-acs-signature-nonce"])
    assert first["x-acs-signature-nonce"] != second["x-acs-signature-nonce"]
    assert first["authorization"] != second["authorization"]
    sent = datetime.strptime(first["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(datetime.now(timezone.utc) - sent) < timedelta(minutes=1)


def test_sign_treats_an_empty_token_as_none() -> None:
    assert _sign(security_token="", nonce="n", date=VECTOR_DATE) == _sign(
        nonce="n", date=VECTOR_DATE
    )
    assert "x-acs-security-token" not in _sign(security_token="")


def test_sign_refuses_extra_headers_that_replace_its_own() -> None:
    for name in ("X-ACS-Date", "authorization"):
        with pytest.raises(ValueError, match=r"^Extra header '.*' would replace one sign\(\) sets"):
            _sign(extra_headers={name: "x"})


def test_sign_refuses_an_unknown_algorithm_without_showing_the_secret() -> None:
    with pytest.raises(ValueError) as caught:
        _sign(algorithm="HMAC-MD5")
    message = str(caught.value)
    assert message == (
        "Unknown signature algorithm 'HMAC-MD5'; use 'ACS3-HMAC-SHA256' or 'ROA-HMAC-SHA1'."
    )
    assert SECRET not in message
