"""The fake PAI API: paging, filters, faults and signature checks, driven by the official SDK."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

pytest.importorskip("alibabacloud_tea_openapi.utils", reason="pip install -e '.[test]'")

from alibabacloud_tea_openapi import exceptions as sdk_errors
from alibabacloud_tea_openapi import models as sdk_models
from alibabacloud_tea_openapi.client import Client
from alibabacloud_tea_openapi.utils import Utils, get_canonical_query_string
from darabonba.request import DaraRequest
from darabonba.runtime import RuntimeOptions

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fake_pai_api.py"
VECTORS = FIXTURES / "signing-vectors.json"
ACS3 = "ACS3-HMAC-SHA256"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fake_pai_api", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building classes
    spec.loader.exec_module(module)
    return module


fake = _load()


def sign(
    url: str,
    path: str,
    query: dict[str, str],
    *,
    key: str = "test-ak",
    secret: str = "test-secret",
    token: str | None = None,
    roa: bool = False,
    date: str | None = None,
    nonce: str | None = None,
    action: str | None = None,
) -> dict[str, str]:
    """Headers for a GET, signed by the official SDK's functions (not the project's signer)."""
    headers = {
        "host": urlsplit(url).netloc,
        "accept": "application/json",
        "x-acs-action": action or ("GetImage" if path.count("/") > 3 else "ListImages"),
        "x-acs-version": "2021-02-04",
        "x-acs-signature-nonce": nonce or Utils.get_nonce(),
    }
    if token is not None:
        headers |= {"x-acs-accesskey-id": key, "x-acs-security-token": token}
    request = DaraRequest()
    request.method, request.pathname, request.query = "GET", path, dict(query)
    if roa:
        headers |= {"date": date or Utils.get_date_utcstring()}
        headers |= {"x-acs-signature-method": "HMAC-SHA1", "x-acs-signature-version": "1.0"}
        request.headers = headers
        signature = Utils.get_roasignature(Utils.get_string_to_sign(request), secret)
        return {**headers, "authorization": f"acs {key}:{signature}"}
    payload = Utils.hash(b"", ACS3).hex()
    headers |= {"x-acs-date": date or Utils.get_timestamp(), "x-acs-content-sha256": payload}
    request.headers = headers
    return {
        **headers,
        "authorization": Utils.get_authorization(request, ACS3, payload, key, secret),
    }


def get(
    api: Any,
    path: str = "/api/v1/images",
    query: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 1.0,
    **signing: Any,
) -> requests.Response:
    decoded = {k: str(v) for k, v in (query or {}).items()}
    headers = headers or sign(api.url, path, decoded, **signing)
    encoded = get_canonical_query_string(decoded)  # the SDK sends its canonical query
    return requests.get(f"{api.url}{path}?{encoded}", headers=headers, timeout=timeout)


def ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [image["ImageId"] for image in response.json()["Images"]]


def code(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["Code"]


@pytest.fixture
def api() -> Iterator[Any]:
    with fake.FakePaiApi({"cn-hangzhou": fake.synthetic_images(45)}) as server:
        yield server


def test_pages_cover_the_listing_in_ascending_order(api: Any) -> None:
    pages = [get(api, query={"PageNumber": n, "PageSize": 20}) for n in (1, 2, 3, 4)]
    assert [len(ids(page)) for page in pages] == [20, 20, 5, 0]
    assert {page.json()["TotalCount"] for page in pages} == {45}
    everything = [image_id for page in pages for image_id in ids(page)]
    assert everything == [image["ImageId"] for image in api.images()]
    times = [image["GmtCreateTime"] for image in api.images()]
    assert times == sorted(times) and len(set(times)) == 45


def test_defaults_to_twenty_ascending_and_desc_reverses(api: Any) -> None:
    listing = [image["ImageId"] for image in api.images()]
    assert ids(get(api)) == listing[:20]
    assert ids(get(api, query={"Order": "DESC", "SortBy": "GmtCreateTime"})) == listing[::-1][:20]


def test_page_size_cap_is_silent_and_keeps_total_count(api: Any) -> None:
    api.faults.page_size_cap = 7
    page = get(api, query={"PageNumber": 2, "PageSize": 20})
    assert ids(page) == [image["ImageId"] for image in api.images()[7:14]]
    assert page.json()["TotalCount"] == 45


@pytest.mark.parametrize(("verbose", "labelled"), [("true", True), ("True", True), ("0", False)])
def test_verbose_decides_whether_labels_come_back(api: Any, verbose: str, labelled: bool) -> None:
    images = get(api, query={"Verbose": verbose, "PageSize": 3}).json()["Images"]
    assert all(("Labels" in image) is labelled for image in images)
    assert all("Labels" not in image for image in get(api).json()["Images"])


def test_labels_filter_ands_its_terms(api: Any) -> None:
    def has(image: dict[str, Any], key: str, value: str) -> bool:
        return {"Key": key, "Value": value} in image["Labels"]

    expected = [
        image["ImageId"]
        for image in api.images()
        if has(image, "system.chipType", "GPU") and has(image, "system.supported.dlc", "true")
    ]
    query = {"Labels": "system.chipType=GPU,system.supported.dlc=true", "PageSize": 100}
    page = get(api, query=query)
    assert 0 < len(expected) < 45
    assert ids(page) == expected and page.json()["TotalCount"] == len(expected)
    assert get(api, query={"Labels": "system.chipType=TPU"}).json()["TotalCount"] == 0


def test_name_filter_is_a_case_insensitive_substring(api: Any) -> None:
    images = get(api, query={"Name": "PyTorch", "PageSize": 100}).json()["Images"]
    assert images and all("pytorch" in image["Name"] for image in images)


def test_get_image_has_no_image_id_field(api: Any) -> None:
    first = api.images()[0]
    body = get(api, f"/api/v1/images/{first['ImageId']}", {"Verbose": "true"}).json()
    assert "ImageId" not in body and body["ImageUri"] == first["ImageUri"] and body["Labels"]
    assert code(get(api, "/api/v1/images/image-missing")) == (404, "ImageNotFound")


def test_unknown_paths_actions_and_parameters_are_errors(api: Any) -> None:
    missing = get(api, "/api/v1/nothing")
    assert code(missing) == (404, "InvalidAction.NotFound")
    assert set(missing.json()) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert code(get(api, action="GetImage")) == (404, "InvalidAction.NotFound")
    assert code(get(api, query={"PageSize": "many"})) == (400, "InvalidParameter")
    assert code(get(api, query={"Order": "RANDOM"})) == (400, "InvalidParameter")


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, "Throttling.User"), (429, "Throttling.User"), (503, "ServiceUnavailable")],
)
def test_throttling_status_code_and_retry_after(api: Any, status: int, expected: str) -> None:
    api.faults.throttle_first, api.faults.throttle_status, api.faults.retry_after_ms = (
        1,
        status,
        1500,
    )
    throttled = get(api)
    assert code(throttled) == (status, expected)
    assert throttled.headers["x-acs-retry-after"] == "1500"
    assert get(api).status_code == 200


def test_throttle_every_nth_request(api: Any) -> None:
    api.faults.throttle_every = 3
    assert [get(api).status_code for _ in range(6)] == [200, 200, 400, 200, 200, 400]


def test_throttle_storm_spends_its_budget_then_recovers(api: Any) -> None:
    api.faults.throttle_first = 3
    responses = [get(api) for _ in range(4)]
    assert [r.status_code for r in responses] == [400, 400, 400, 200]
    assert "x-acs-retry-after" not in responses[0].headers
    assert api.faults.throttle_first == 0


def test_budgets_chain_in_order_and_rejected_requests_spend_none(api: Any) -> None:
    api.faults.throttle_first, api.faults.error_5xx_first = 1, 4
    assert code(get(api, secret="wrong")) == (400, "SignatureDoesNotMatch")
    statuses = [code(get(api)) for _ in range(5)]
    assert statuses == [
        (400, "Throttling.User"),
        (500, "InternalError"),
        (502, "BadGateway"),
        (503, "ServiceUnavailable"),
        (500, "InternalError"),
    ]
    assert get(api).status_code == 200


def test_malformed_body_is_a_200_that_is_not_json(api: Any) -> None:
    api.faults.malformed_first = 1
    bad = get(api)
    assert bad.status_code == 200
    with pytest.raises(ValueError):
        bad.json()
    assert len(ids(get(api))) == 20


def test_truncated_body_matches_its_content_length(api: Any) -> None:
    api.faults.truncated_first = 1
    cut = get(api)
    assert cut.status_code == 200 and cut.content.startswith(b'{"RequestId"')
    assert int(cut.headers["Content-Length"]) == len(cut.content)
    with pytest.raises(ValueError):
        json.loads(cut.content)
    assert len(ids(get(api))) == 20


def test_hang_makes_the_client_time_out(api: Any) -> None:
    # Far longer than any timeout below: a request that hangs times out, one that does not
    # is answered, however busy the machine.
    api.faults.hang_first, api.faults.hang_seconds = 1, 60.0
    with pytest.raises(requests.Timeout):
        get(api, timeout=0.5)
    assert api.faults.hang_first == 0
    assert get(api, timeout=30).status_code == 200  # only the first request hangs


def test_latency_delays_every_response(api: Any) -> None:
    api.faults.latency = 60.0
    for signing in ({}, {"secret": "wrong"}):  # a refused signature waits too
        with pytest.raises(requests.Timeout):
            get(api, timeout=0.5, **signing)
    api.faults.latency = 0.0
    assert get(api, timeout=30).status_code == 200  # the latency, not the server, timed out


def test_drift_between_pages_skips_images() -> None:
    faults = fake.Faults(drift_after=1, drift_insert=2, drift_delete=3)
    with fake.FakePaiApi({"cn-hangzhou": fake.synthetic_images(10)}, faults=faults) as api:
        before = [image["ImageId"] for image in api.images()]
        first = get(api, query={"PageSize": 5})
        second = get(api, query={"PageSize": 5, "PageNumber": 2})
        after = api.images()
    assert ids(first) == before[:5] and first.json()["TotalCount"] == 10
    assert [image["ImageId"] for image in after[:7]] == before[3:]
    assert after[-1]["GmtCreateTime"] > after[-2]["GmtCreateTime"] > after[-3]["GmtCreateTime"]
    assert ids(second) == [image["ImageId"] for image in after[5:]]
    assert second.json()["TotalCount"] == 9
    assert set(before[5:8]).isdisjoint(ids(first) + ids(second))  # the paging pitfall


@pytest.mark.parametrize(
    ("always", "status"), [("InvalidAccessKeyId.NotFound", 404), ("Throttling.User", 400)]
)
def test_always_error(api: Any, always: str, status: int) -> None:
    api.faults.always_error = always
    assert {code(get(api)) for _ in range(3)} == {(status, always)}


@pytest.mark.parametrize(
    ("signing", "expected"),
    [
        ({"secret": "wrong"}, (400, "SignatureDoesNotMatch")),
        ({"secret": "wrong", "roa": True}, (400, "SignatureDoesNotMatch")),
        ({"key": "nobody"}, (404, "InvalidAccessKeyId.NotFound")),
        ({"date": "2024-01-02T03:04:05Z"}, (400, "InvalidTimeStamp.Expired")),
        ({"date": "Tue, 02 Jan 2024 03:04:05 GMT", "roa": True}, (400, "InvalidTimeStamp.Expired")),
        ({"date": "yesterday"}, (400, "InvalidTimeStamp.Format")),
        ({"token": "unexpected"}, (400, "InvalidSecurityToken.MismatchWithAccessKey")),
    ],
)
def test_signature_failures(api: Any, signing: dict[str, Any], expected: tuple[int, str]) -> None:
    assert code(get(api, **signing)) == expected


def test_dates_within_fifteen_minutes_pass(api: Any) -> None:
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 14 * 60))
    late = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 16 * 60))
    assert get(api, date=soon).status_code == 200
    assert code(get(api, date=late)) == (400, "InvalidTimeStamp.Expired")


def test_roa_signature_is_accepted(api: Any) -> None:
    assert (
        len(ids(get(api, query={"PageSize": 3, "Labels": "system.official=true"}, roa=True))) == 3
    )


def test_a_nonce_is_good_once(api: Any) -> None:
    assert code(get(api, nonce="n-1", secret="wrong")) == (400, "SignatureDoesNotMatch")
    assert get(api, nonce="n-1").status_code == 200  # only valid requests use a nonce up
    assert code(get(api, nonce="n-1")) == (400, "SignatureNonceUsed")


def test_incomplete_or_tampered_requests(api: Any) -> None:
    query = {"PageSize": "5"}
    headers = sign(api.url, "/api/v1/images", query)
    unsigned = {**headers, "x-acs-extra": "1"}
    no_auth = {k: v for k, v in headers.items() if k != "authorization"}
    assert code(get(api, query=query, headers=unsigned)) == (400, "IncompleteSignature")
    assert code(get(api, query=query, headers=no_auth)) == (400, "IncompleteSignature")
    assert code(get(api, query={"PageSize": "6"}, headers=headers)) == (
        400,
        "SignatureDoesNotMatch",
    )


def test_security_token_must_match() -> None:
    images = {"cn-hangzhou": fake.synthetic_images(3)}
    with fake.FakePaiApi(images, security_token="tok/with+special=chars") as api:
        assert get(api, token="tok/with+special=chars").status_code == 200
        for token in (None, "other"):
            assert code(get(api, token=token)) == (
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
            )


def test_requests_are_logged(api: Any) -> None:
    get(api, query={"PageSize": 2})
    get(api, secret="wrong")
    ok, bad = api.requests
    assert (ok.path, ok.query, ok.status, ok.code, ok.region) == (
        "/api/v1/images",
        {"PageSize": "2"},
        200,
        None,
        "cn-hangzhou",
    )
    assert (bad.status, bad.code) == (400, "SignatureDoesNotMatch")


def _sdk_list(api: Any, algorithm: str | None, secret: str = "test-secret") -> dict[str, Any]:
    config = sdk_models.Config(
        access_key_id="test-ak",
        access_key_secret=secret,
        endpoint=urlsplit(api.url).netloc,
        protocol="http",
        signature_algorithm=algorithm,
    )
    params = sdk_models.Params(
        action="ListImages",
        version="2021-02-04",
        protocol="HTTP",
        pathname="/api/v1/images",
        method="GET",
        auth_type="AK",
        style="ROA",
        req_body_type="json",
        body_type="json",
    )
    query = {"Labels": "system.official=true", "Verbose": "true", "PageSize": "50"}
    request = sdk_models.OpenApiRequest(query=query)
    result: dict[str, Any] = Client(config).call_api(params, request, RuntimeOptions())
    return result


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_the_official_sdk_client_talks_to_it(api: Any, algorithm: str | None) -> None:
    body = _sdk_list(api, algorithm)["body"]
    assert body["TotalCount"] == 45 and len(body["Images"]) == 45
    with pytest.raises(sdk_errors.ClientException) as rejected:
        _sdk_list(api, algorithm, secret="wrong")
    assert rejected.value.code == "SignatureDoesNotMatch"
    api.faults.throttle_first, api.faults.retry_after_ms = 1, 250
    with pytest.raises(sdk_errors.ThrottlingException) as throttled:
        _sdk_list(api, algorithm)
    assert throttled.value.retry_after == 250


def _vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS.read_text())["vectors"]
    return vectors


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"].split(" ")[0])
def test_signing_vectors_verify_at_their_own_date(vector: dict[str, Any]) -> None:
    headers = {**vector["headers_signed_and_sent"], "authorization": vector["authorization"]}
    stamp = headers.get("x-acs-date") or headers["date"]
    keys = {k: vector[k] for k in ("access_key_id", "access_key_secret", "security_token")}

    def verdict(headers: dict[str, str], **extra: Any) -> str | None:
        args = (vector["method"], vector["path"], vector["query"], headers)
        result: str | None = fake.verify(*args, **keys, **extra)
        return result

    then = fake.parse_time(stamp)
    assert verdict(headers, now=then) is None
    assert verdict(headers, now=then + 14 * 60) is None
    assert verdict(headers) == "InvalidTimeStamp.Expired"
    auth = vector["authorization"]
    flipped = auth[:-5] + ("a" if auth[-5] != "a" else "b") + auth[-4:]
    assert verdict({**headers, "authorization": flipped}, now=then) == "SignatureDoesNotMatch"
    seen: set[str] = set()
    assert verdict(headers, now=then, seen_nonces=seen) is None
    assert verdict(headers, now=then, seen_nonces=seen) == "SignatureNonceUsed"


def test_synthetic_images_are_realistic_and_deterministic() -> None:
    images = fake.synthetic_images(300, "cn-shanghai", seed=7)
    assert images == fake.synthetic_images(300, "cn-shanghai", seed=7)
    assert images != fake.synthetic_images(300, "cn-shanghai", seed=8)
    assert len({i["ImageId"] for i in images}) == len({i["ImageUri"] for i in images}) == 300
    times = [i["GmtCreateTime"] for i in images]
    assert times == sorted(times) and len(set(times)) == 300
    assert all(
        i["ImageUri"].startswith("dsw-registry.cn-shanghai.cr.aliyuncs.com/pai/") for i in images
    )
    labels = [{label["Key"]: label["Value"] for label in i["Labels"]} for i in images]
    assert all(
        entry["system.official"] == "true" and "system.pythonVersion" in entry for entry in labels
    )
    frameworks = {key for entry in labels for key in entry if key.startswith("system.framework.")}
    assert len(frameworks) >= 5
    assert {entry["system.chipType"] for entry in labels} == {"GPU", "CPU"}
    assert all(isinstance(i["Size"], int) and i["Size"] > 0 for i in images)


def test_load_snapshot(tmp_path: Path) -> None:
    shipped = fake.load_snapshot(ROOT / "data" / "snapshot")
    assert "cn-hangzhou" in shipped and all(isinstance(v, list) for v in shipped.values())
    (tmp_path / "us-east-1.json").write_text(json.dumps({"Images": [{"ImageId": "image-1"}]}))
    assert fake.load_snapshot(tmp_path) == {"us-east-1": [{"ImageId": "image-1"}]}


def test_one_region_per_server() -> None:
    with pytest.raises(ValueError, match="exactly one region"):
        fake.FakePaiApi({"cn-hangzhou": [], "cn-beijing": []})


def test_cli_serves_until_sigterm() -> None:
    command = [sys.executable, str(SCRIPT), "--port", "0", "--images", "5", "--throttle-every", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        server = type("Server", (), {"url": process.stdout.readline().strip()})
        assert server.url.startswith("http://127.0.0.1:")
        assert get(server).json()["TotalCount"] == 5
        assert code(get(server)) == (400, "Throttling.User")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0
    assert "export ALIBABA_CLOUD_ACCESS_KEY_ID=test-ak" in stderr
    assert "export ALIBABA_CLOUD_ACCESS_KEY_SECRET=test-secret" in stderr


def test_reset_drops_the_connection_without_an_answer(api: Any) -> None:
    api.faults.reset_first = 1
    with pytest.raises(requests.ConnectionError):
        get(api)
    assert api.faults.reset_first == 0
    assert len(ids(get(api))) == 20


def test_wrong_content_type_labels_a_good_body_as_html(api: Any) -> None:
    api.faults.wrong_content_type_first = 1
    relabelled = get(api)
    assert relabelled.headers["Content-Type"].startswith("text/html")
    assert len(ids(relabelled)) == 20  # the body itself is the right JSON
    assert get(api).headers["Content-Type"].startswith("application/json")


def test_duplicate_repeats_the_first_image_in_place_of_a_later_pages_last(api: Any) -> None:
    api.faults.duplicate_first = 1
    listing = [image["ImageId"] for image in api.images()]
    first = get(api, query={"PageSize": 20})
    second = get(api, query={"PageSize": 20, "PageNumber": 2})
    assert ids(first) == listing[:20]  # page 1 is never touched
    assert ids(second) == [*listing[20:39], listing[0]]
    assert second.json()["TotalCount"] == 45
    assert ids(get(api, query={"PageSize": 20, "PageNumber": 2})) == listing[20:40]


@pytest.mark.parametrize("lie", [20, -20])
def test_total_count_lies_on_every_page(api: Any, lie: int) -> None:
    api.faults.total_count_lie = lie
    pages = [get(api, query={"PageNumber": n, "PageSize": 20}) for n in (1, 3)]
    assert {page.json()["TotalCount"] for page in pages} == {45 + lie}
    assert [len(ids(page)) for page in pages] == [20, 5]


def test_missing_fields_are_dropped_from_every_image(api: Any) -> None:
    api.faults.missing_fields = ("Labels", "GmtCreateTime")
    images = get(api, query={"Verbose": "true", "PageSize": 50}).json()["Images"]
    assert len(images) == 45
    assert all("Labels" not in i and "GmtCreateTime" not in i and i["ImageId"] for i in images)
    first = api.images()[0]
    body = get(api, f"/api/v1/images/{first['ImageId']}", {"Verbose": "true"}).json()
    assert "Labels" not in body and body["ImageUri"] == first["ImageUri"]
    assert api.listing() == images  # what a crawl should store, fields missing too
    assert "Labels" in api.images()[0]  # the stored images keep them


def test_zero_images_serves_an_empty_listing(api: Any) -> None:
    api.faults.zero_images = True
    page = get(api, query={"PageSize": 20})
    assert (page.json()["TotalCount"], ids(page)) == (0, [])
    assert api.listing() == [] and len(api.images()) == 45


def test_cli_takes_the_new_switches() -> None:
    command = [
        sys.executable, str(SCRIPT), "--port", "0", "--images", "5", "--zero-images",
        "--missing-fields", "Labels,Name", "--total-count-lie", "3",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        server = type("Server", (), {"url": process.stdout.readline().strip()})
        assert get(server).json()["TotalCount"] == 3
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=5)
    assert process.returncode == 0
