"""Sync against a real HTTP server on 127.0.0.1 that verifies signatures with the official SDK."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import catalog
from catalog import db as database
from catalog.client import ClientSettings, PaiClient
from catalog.config import parse_target
from catalog.credentials import Credentials
from catalog.errors import ApiError, AuthError, LockedError, UsageError
from catalog.sync import SyncOptions, sync, sync_options
from tests.conftest import ROOT

REGION = "cn-hangzhou"
SECRET = "test-secret"
CREDS = Credentials("test-ak", SECRET, source="the test")


def _load_fake() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fake_pai_api", ROOT / "scripts" / "fake_pai_api.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_pai_api"] = module
    spec.loader.exec_module(module)
    return module


fake = _load_fake()


@pytest.fixture
def server() -> Iterator[Any]:
    with fake.FakePaiApi({REGION: fake.synthetic_images(230, REGION)}) as api:
        yield api


def options(api: Any, **kwargs: Any) -> SyncOptions:
    client = ClientSettings(
        connect_timeout=1.0,
        read_timeout=kwargs.pop("read_timeout", 2.0),
        retries=kwargs.pop("retries", 4),
        backoff=0.01,
        backoff_cap=0.05,
    )
    base = {"regions": (REGION,), "endpoints": {"": api.url}, "page_size": 50, "client": client}
    return SyncOptions(**{**base, **kwargs})


def run(api: Any, db_path: Path, **kwargs: Any) -> Any:
    [result] = sync(options(api, **kwargs), db_option=str(db_path), credentials=CREDS)
    return result


def stored_ids(db_path: Path) -> set[str]:
    conn = sqlite3.connect(db_path)
    try:
        return {row[0] for row in conn.execute("SELECT image_id FROM v_image")}
    finally:
        conn.close()


def served_ids(api: Any) -> set[str]:
    return {image["ImageId"] for image in api.images(REGION)}


def dump(db_path: Path) -> list[str]:
    conn = sqlite3.connect(db_path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def runs(db_path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(
            "SELECT status, seen, added, changed, removed, pages, requests, retries, error "
            "FROM sync_run ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_full_sync_then_a_second_that_writes_only_its_run(server: Any, db_path: Path) -> None:
    first = run(server, db_path)
    assert first.ok, first.error
    # 5 pages and the empty one past them, read twice
    assert (first.seen, first.added, first.pages) == (230, 230, 12)
    assert stored_ids(db_path) == served_ids(server)
    before = dump(db_path)
    second = run(server, db_path)
    assert (second.ok, second.added, second.changed, second.removed) == (True, 0, 0, 0)
    after = dump(db_path)
    new_lines = [line for line in after if line not in before]
    assert len(new_lines) == 1 and new_lines[0].startswith('INSERT INTO "sync_run"')


def test_no_verify_reads_each_page_once(server: Any, db_path: Path) -> None:
    result = run(server, db_path, verify=False)
    assert (result.ok, result.pages, result.requests) == (True, 6, 6)


def test_page_size_cap(server: Any, db_path: Path) -> None:
    server.faults.page_size_cap = 30
    result = run(server, db_path, page_size=100, verify=False)
    assert result.ok, result.error
    assert result.pages == 9  # ceil(230 / 30), and the empty page past them
    assert stored_ids(db_path) == served_ids(server)


@pytest.mark.parametrize(
    "fault",
    [
        {"throttle_first": 3, "throttle_status": 400},
        {"throttle_first": 3, "throttle_status": 429},
        {"throttle_first": 3, "throttle_status": 503},
        {"throttle_every": 2},
        {"error_5xx_first": 3},
        {"malformed_first": 2},
        {"truncated_first": 2},
    ],
)
def test_each_transient_fault_alone(server: Any, db_path: Path, fault: dict[str, Any]) -> None:
    for name, value in fault.items():
        setattr(server.faults, name, value)
    result = run(server, db_path)
    assert result.ok, result.error
    assert result.retries >= 1
    assert stored_ids(db_path) == served_ids(server)
    assert runs(db_path)[-1][7] == result.retries  # retries recorded on the run


def test_hanging_requests_time_out_and_retry(server: Any, db_path: Path) -> None:
    server.faults.hang_first = 2
    server.faults.hang_seconds = 2.0
    result = run(server, db_path, read_timeout=0.3)
    assert result.ok, result.error
    assert result.retries == 2


def test_a_storm_of_throttling(server: Any, db_path: Path) -> None:
    server.faults.throttle_first = 10  # every request, page 1's ten attempts included
    server.faults.throttle_status = 429
    server.faults.throttle_every = 3  # and then every third one, across four workers
    result = run(server, db_path, retries=12, workers=4)
    assert result.ok, result.error
    assert result.retries >= 10
    assert stored_ids(db_path) == served_ids(server)


def test_retry_after_is_honoured(server: Any) -> None:
    server.faults.throttle_first = 1
    server.faults.retry_after_ms = 300
    waits: list[float] = []
    client = PaiClient(REGION, server.url, CREDS, ClientSettings(backoff=0.001), sleep=waits.append)
    body = client.list_images_page(1, 10)
    assert body["TotalCount"] == 230
    assert len(waits) == 1 and 0.3 <= waits[0] <= 30


@pytest.mark.parametrize(("insert", "delete"), [(3, 0), (0, 3), (2, 2), (1, 1)])
def test_drift_in_the_middle_of_a_crawl(
    server: Any, db_path: Path, insert: int, delete: int
) -> None:
    server.faults.drift_after = 2
    server.faults.drift_insert = insert
    server.faults.drift_delete = delete
    result = run(server, db_path, workers=1)
    assert result.ok, result.error
    assert stored_ids(db_path) == served_ids(server)
    assert result.seen == 230 + insert - delete


def test_faults_that_do_not_stop_fail_cleanly(server: Any, db_path: Path) -> None:
    assert run(server, db_path).ok
    before = dump(db_path)
    server.faults.always_error = "Throttling.User"
    result = run(server, db_path, retries=2)
    assert not result.ok
    assert result.error == (
        "cn-hangzhou: page 1 failed after 3 attempts: HTTP 400 Throttling.User: "
        "Request was denied due to user flow control."
    ) or result.error.startswith("cn-hangzhou: page 1 failed after 3 attempts: HTTP 400")
    after = dump(db_path)
    added = [line for line in after if line not in before]
    assert len(added) == 1 and "'failed'" in added[0]  # only the failed run's row


def test_auth_failure_is_immediate_and_names_the_code(server: Any, db_path: Path) -> None:
    wrong = Credentials("test-ak", "not-the-secret", source="environment")
    [result] = sync(options(server), db_option=str(db_path), credentials=wrong)
    assert not result.ok
    assert result.requests == 1 and result.retries == 0
    assert result.error == (
        "cn-hangzhou: the API refused the request (HTTP 400 SignatureDoesNotMatch); "
        "check the AccessKey secret (credentials from environment)."
    )
    assert "not-the-secret" not in result.error


def test_unknown_key_is_an_auth_error(server: Any) -> None:
    client = PaiClient(REGION, server.url, Credentials("nobody", "x", source="environment"))
    with pytest.raises(AuthError) as caught:
        client.list_images_page(1, 10)
    assert caught.value.code == "InvalidAccessKeyId.NotFound"
    assert "check the AccessKey ID" in str(caught.value)


def test_connection_refused_is_retried_then_fails(db_path: Path) -> None:
    client = PaiClient(
        REGION, "http://127.0.0.1:9", CREDS, ClientSettings(retries=2, backoff=0.001)
    )
    with pytest.raises(ApiError, match=r"failed after 3 attempts: cannot connect to http://127"):
        client.list_images_page(1, 10)
    assert (client.counters.requests, client.counters.retries) == (3, 2)


def test_mass_removal_is_refused_unless_allowed(server: Any, db_path: Path) -> None:
    assert run(server, db_path).ok
    before = dump(db_path)
    server.faults.drift_after = 0
    server.faults.drift_delete = 60
    refused = run(server, db_path)
    assert not refused.ok
    assert refused.error == (
        "cn-hangzhou: this run would remove 60 of 230 live images (26%); nothing was written. "
        "If the removal is real, run again with --allow-mass-removal."
    )
    added = [line for line in dump(db_path) if line not in before]
    assert len(added) == 1 and "'failed'" in added[0]
    allowed = run(server, db_path, allow_mass_removal=True)
    assert (allowed.ok, allowed.removed) == (True, 60)


def test_removed_image_is_no_longer_resolved(server: Any, db_path: Path) -> None:
    assert run(server, db_path).ok
    first = server.images(REGION)[0]
    server.faults.drift_after = 0
    server.faults.drift_delete = 1
    result = run(server, db_path)
    assert (result.ok, result.removed) == (True, 1)
    shown = catalog.show(first["ImageId"], db=str(db_path))
    assert shown.removed
    listed = catalog.list_images(db=str(db_path))
    assert first["ImageId"] not in {info.image_id for info in listed}


def test_several_regions_commit_on_their_own(db_path: Path) -> None:
    with (
        fake.FakePaiApi({"cn-beijing": fake.synthetic_images(40, "cn-beijing")}) as beijing,
        fake.FakePaiApi({REGION: fake.synthetic_images(30, REGION)}) as hangzhou,
    ):
        hangzhou.faults.always_error = "ServiceUnavailable"
        hangzhou.faults.throttle_status = 503
        opts = options(
            beijing,
            regions=("cn-beijing", REGION),
            endpoints={"cn-beijing": beijing.url, REGION: hangzhou.url},
            retries=1,
        )
        results = sync(opts, db_option=str(db_path), credentials=CREDS)
    assert [(r.region, r.ok) for r in results] == [("cn-beijing", True), (REGION, False)]
    assert len(stored_ids(db_path)) == 40


def test_a_second_sync_is_locked_out(server: Any, db_path: Path) -> None:
    target = parse_target(str(db_path))
    with database.sync_lock(target), pytest.raises(LockedError) as caught:
        run(server, db_path)
    assert str(caught.value) == (
        f"Another sync is writing {db_path}; let it finish, or pass --wait to start when it does."
    )


def test_readers_keep_working_during_a_sync(server: Any, db_path: Path) -> None:
    import threading

    assert run(server, db_path).ok
    server.faults.latency = 0.05
    server.faults.drift_after = 0
    server.faults.drift_insert = 5
    answers: list[str] = []
    worker = threading.Thread(target=lambda: run(server, db_path))
    worker.start()
    while worker.is_alive():
        answers.append(catalog.list_images(db=str(db_path))[0].image_id)
        time.sleep(0.01)
    worker.join()
    assert answers and len(stored_ids(db_path)) == 235


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="is not an endpoint"):
        sync_options(endpoints=["127.0.0.1:8123"])
    with pytest.raises(UsageError, match="is not a region id"):
        sync_options(regions=["Hangzhou!"])
    with pytest.raises(UsageError, match="One --endpoint URL cannot serve several regions"):
        sync_options(regions=["cn-hangzhou", "cn-beijing"], endpoints=["http://127.0.0.1:1"])


def test_no_region_and_an_empty_catalog(server: Any, db_path: Path) -> None:
    with pytest.raises(UsageError, match="name one with --region"):
        sync(options(server, regions=()), db_option=str(db_path), credentials=CREDS)


def test_the_secret_never_reaches_the_database(server: Any, db_path: Path) -> None:
    server.faults.throttle_first = 2
    assert run(server, db_path).ok
    wrong = Credentials("test-ak", "a-wrong-secret-1234", source="environment")
    sync(options(server), db_option=str(db_path), credentials=wrong)
    data = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file())
    assert SECRET.encode() not in data and b"a-wrong-secret-1234" not in data
    assert "a-wrong-secret-1234" not in json.dumps(runs(db_path))


def test_endpoints() -> None:
    from catalog.client import endpoint_for, parse_endpoints

    assert endpoint_for("cn-hangzhou", {}) == "https://aiworkspace.cn-hangzhou.aliyuncs.com"
    assert endpoint_for("cn-hangzhou", {}, vpc=True) == (
        "https://aiworkspace-vpc.cn-hangzhou.aliyuncs.com"
    )
    overrides = parse_endpoints(["http://127.0.0.1:1/", "cn-beijing=http://127.0.0.1:2"])
    assert overrides == {"": "http://127.0.0.1:1/", "cn-beijing": "http://127.0.0.1:2"}
    assert endpoint_for("cn-beijing", overrides) == "http://127.0.0.1:2"
    assert endpoint_for("cn-shanghai", overrides) == "http://127.0.0.1:1"


def test_requests_name_the_tool(server: Any) -> None:
    client = PaiClient(REGION, server.url, CREDS)
    client.list_images_page(1, 5)
    agent = server.requests[-1].headers["user-agent"]
    assert agent == f"pai-image-catalog/{catalog.__version__}"
