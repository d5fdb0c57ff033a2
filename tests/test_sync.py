"""Sync against a real HTTP server on 127.0.0.1 that verifies signatures with the official SDK."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

import catalog
import catalog.sync.client as client_module
from catalog.account import Credentials
from catalog.config import parse_target
from catalog.errors import ApiError, AuthError, LockedError, UsageError
from catalog.store import locks
from catalog.sync.client import ClientSettings, PaiClient
from catalog.sync.run import SyncOptions, sync, sync_options
from tests.conftest import ROOT
from tests.dbkit import CatalogDb, dump

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


def run(api: Any, db: CatalogDb, **kwargs: Any) -> Any:
    [result] = sync(options(api, **kwargs), db_option=db.target, credentials=CREDS)
    return result


def stored_ids(db: CatalogDb) -> set[str]:
    return {row[0] for row in db.rows("SELECT image_id FROM v_image")}


def served_ids(api: Any) -> set[str]:
    return {image["ImageId"] for image in api.images(REGION)}


def runs(db: CatalogDb) -> list[tuple[Any, ...]]:
    return db.rows(
        "SELECT status, seen, added, changed, removed, pages, requests, retries, error "
        "FROM sync_run ORDER BY id"
    )


def test_full_sync_then_a_second_that_writes_only_its_run(
    server: Any, catalog_db: CatalogDb
) -> None:
    first = run(server, catalog_db)
    assert first.ok, first.error
    # 5 pages and the empty one past them, then a check of one large page and the one past it
    assert (first.seen, first.added, first.pages) == (230, 230, 6 + 2)
    assert stored_ids(catalog_db) == served_ids(server)
    before = dump(catalog_db)
    second = run(server, catalog_db)
    assert (second.ok, second.added, second.changed, second.removed) == (True, 0, 0, 0)
    after = dump(catalog_db)
    new_lines = [line for line in after if line not in before]
    assert len(new_lines) == 1 and new_lines[0].startswith("sync_run ")


def test_no_verify_reads_each_page_once(server: Any, catalog_db: CatalogDb) -> None:
    result = run(server, catalog_db, verify=False)
    assert (result.ok, result.pages, result.requests) == (True, 6, 6)


def test_page_size_cap(server: Any, catalog_db: CatalogDb) -> None:
    server.faults.page_size_cap = 30
    result = run(server, catalog_db, page_size=100, verify=False)
    assert result.ok, result.error
    assert result.pages == 9  # ceil(230 / 30), and the empty page past them
    assert stored_ids(catalog_db) == served_ids(server)


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
def test_each_transient_fault_alone(
    server: Any, catalog_db: CatalogDb, fault: dict[str, Any]
) -> None:
    for name, value in fault.items():
        setattr(server.faults, name, value)
    result = run(server, catalog_db)
    assert result.ok, result.error
    assert result.retries >= 1
    assert stored_ids(catalog_db) == served_ids(server)
    assert runs(catalog_db)[-1][7] == result.retries  # retries recorded on the run


def test_hanging_requests_time_out_and_retry(server: Any, catalog_db: CatalogDb) -> None:
    server.faults.hang_first = 2
    server.faults.hang_seconds = 2.0
    result = run(server, catalog_db, read_timeout=0.3)
    assert result.ok, result.error
    assert result.retries == 2


def test_a_storm_of_throttling(server: Any, catalog_db: CatalogDb) -> None:
    server.faults.throttle_first = 10  # every request, page 1's ten attempts included
    server.faults.throttle_status = 429
    server.faults.throttle_every = 3  # and then every third one, across four workers
    result = run(server, catalog_db, retries=12, workers=4)
    assert result.ok, result.error
    assert result.retries >= 10
    assert stored_ids(catalog_db) == served_ids(server)


def test_retry_after_is_honoured(server: Any) -> None:
    server.faults.throttle_first = 1
    server.faults.retry_after_ms = 300
    waits: list[float] = []
    client = PaiClient(REGION, server.url, CREDS, ClientSettings(backoff=0.001), sleep=waits.append)
    body = client.list_images_page(1, 10)
    assert body["TotalCount"] == 230
    # The wait runs until 300 ms after the answer came, measured a moment later.
    assert len(waits) == 1 and 0.29 <= waits[0] <= 30


def test_a_netrc_entry_for_the_endpoint_does_not_replace_the_signature(
    server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password something\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = PaiClient(REGION, server.url, CREDS, ClientSettings(retries=0))
    try:
        assert client.list_images_page(1, 10)["TotalCount"] == 230
    finally:
        client.close()
    assert server.requests[-1].headers["authorization"].startswith("ACS3-HMAC-SHA256 ")


def test_proxies_from_the_environment_are_read_once_and_still_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "aiworkspace-vpc.cn-hangzhou.aliyuncs.com")
    public = PaiClient(REGION, "https://aiworkspace.cn-hangzhou.aliyuncs.com", CREDS)
    vpc = PaiClient(REGION, "https://aiworkspace-vpc.cn-hangzhou.aliyuncs.com", CREDS)
    try:
        assert public.proxies.get("https") == "http://127.0.0.1:9"
        assert "https" not in vpc.proxies  # NO_PROXY names that host
    finally:
        public.close()
        vpc.close()


@pytest.mark.parametrize(("insert", "delete"), [(3, 0), (0, 3), (2, 2), (1, 1)])
def test_drift_in_the_middle_of_a_crawl(
    server: Any, catalog_db: CatalogDb, insert: int, delete: int
) -> None:
    server.faults.drift_after = 2
    server.faults.drift_insert = insert
    server.faults.drift_delete = delete
    result = run(server, catalog_db, workers=1)
    assert result.ok, result.error
    assert stored_ids(catalog_db) == served_ids(server)
    assert result.seen == 230 + insert - delete
    # The crawl started over inside one run: it keeps its number on either backend.
    assert result.run_id == 1
    assert catalog_db.rows("SELECT id, status FROM sync_run") == [(1, "ok")]


def test_faults_that_do_not_stop_fail_cleanly(server: Any, catalog_db: CatalogDb) -> None:
    assert run(server, catalog_db).ok
    before = dump(catalog_db)
    server.faults.always_error = "Throttling.User"
    result = run(server, catalog_db, retries=2)
    assert not result.ok
    assert result.error == (
        "cn-hangzhou: page 1 failed after 3 attempts: HTTP 400 Throttling.User: "
        "Request was denied due to user flow control."
    ) or result.error.startswith("cn-hangzhou: page 1 failed after 3 attempts: HTTP 400")
    after = dump(catalog_db)
    added = [line for line in after if line not in before]
    # only the failed run's row
    assert len(added) == 1 and added[0].startswith("sync_run ") and "status='failed'" in added[0]


def test_auth_failure_is_immediate_and_names_the_code(server: Any, catalog_db: CatalogDb) -> None:
    wrong = Credentials("test-ak", "not-the-secret", source="environment")
    [result] = sync(options(server), db_option=catalog_db.target, credentials=wrong)
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


def test_connection_refused_is_retried_then_fails() -> None:
    client = PaiClient(
        REGION, "http://127.0.0.1:9", CREDS, ClientSettings(retries=2, backoff=0.001)
    )
    with pytest.raises(ApiError, match=r"failed after 3 attempts: cannot connect to http://127"):
        client.list_images_page(1, 10)
    assert (client.counters.requests, client.counters.retries) == (3, 2)


def test_mass_removal_is_refused_unless_allowed(server: Any, catalog_db: CatalogDb) -> None:
    assert run(server, catalog_db).ok
    before = dump(catalog_db)
    server.faults.drift_after = 0
    server.faults.drift_delete = 60
    refused = run(server, catalog_db)
    assert not refused.ok
    assert refused.error == (
        "cn-hangzhou: this run would remove 60 of 230 live images (26%); nothing was written. "
        "If the removal is real, run again with --allow-mass-removal."
    )
    added = [line for line in dump(catalog_db) if line not in before]
    assert len(added) == 1 and added[0].startswith("sync_run ") and "status='failed'" in added[0]
    allowed = run(server, catalog_db, allow_mass_removal=True)
    assert (allowed.ok, allowed.removed) == (True, 60)


def test_removed_image_is_no_longer_resolved(server: Any, catalog_db: CatalogDb) -> None:
    assert run(server, catalog_db).ok
    first = server.images(REGION)[0]
    server.faults.drift_after = 0
    server.faults.drift_delete = 1
    result = run(server, catalog_db)
    assert (result.ok, result.removed) == (True, 1)
    shown = catalog.show(first["ImageId"], db=catalog_db.target)
    assert shown.removed
    listed = catalog.list_images(db=catalog_db.target)
    assert first["ImageId"] not in {info.image_id for info in listed}


def test_several_regions_commit_on_their_own(catalog_db: CatalogDb) -> None:
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
        results = sync(opts, db_option=catalog_db.target, credentials=CREDS)
    assert [(r.region, r.ok) for r in results] == [("cn-beijing", True), (REGION, False)]
    assert len(stored_ids(catalog_db)) == 40


def test_a_second_sync_is_locked_out(server: Any, sqlite_path: Path) -> None:
    target = parse_target(str(sqlite_path))
    with locks.write_lock(target), pytest.raises(LockedError) as caught:
        run(server, CatalogDb.file(sqlite_path))
    assert str(caught.value) == (
        f"A pai-catalog sync (pid {os.getpid()}) is writing {sqlite_path}; let it finish, or "
        "pass --wait to start when it does."
    )


def test_readers_keep_working_during_a_sync(server: Any, catalog_db: CatalogDb) -> None:
    import threading

    assert run(server, catalog_db).ok
    server.faults.latency = 0.05
    server.faults.drift_after = 0
    server.faults.drift_insert = 5
    answers: list[str] = []
    worker = threading.Thread(target=lambda: run(server, catalog_db))
    worker.start()
    while worker.is_alive():
        answers.append(catalog.list_images(db=catalog_db.target)[0].image_id)
        time.sleep(0.01)
    worker.join()
    assert answers and len(stored_ids(catalog_db)) == 235


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="is not an endpoint"):
        sync_options(endpoints=["127.0.0.1:8123"])
    with pytest.raises(UsageError, match="is not a region id"):
        sync_options(regions=["Hangzhou!"])
    with pytest.raises(UsageError, match="One --endpoint URL cannot serve several regions"):
        sync_options(regions=["cn-hangzhou", "cn-beijing"], endpoints=["http://127.0.0.1:1"])


def test_no_region_and_an_empty_catalog(server: Any, catalog_db: CatalogDb) -> None:
    with pytest.raises(UsageError, match="name one with --region"):
        sync(options(server, regions=()), db_option=catalog_db.target, credentials=CREDS)


def test_the_secret_never_reaches_the_database(server: Any, catalog_db: CatalogDb) -> None:
    server.faults.throttle_first = 2
    assert run(server, catalog_db).ok
    wrong = Credentials("test-ak", "a-wrong-secret-1234", source="environment")
    sync(options(server), db_option=catalog_db.target, credentials=wrong)
    assert runs(catalog_db)[-1][0] == "failed"
    stored = "\n".join(dump(catalog_db))
    assert SECRET not in stored and "a-wrong-secret-1234" not in stored


def test_the_secret_never_reaches_the_file(server: Any, sqlite_path: Path) -> None:
    db = CatalogDb.file(sqlite_path)
    server.faults.throttle_first = 2
    assert run(server, db).ok
    wrong = Credentials("test-ak", "a-wrong-secret-1234", source="environment")
    sync(options(server), db_option=db.target, credentials=wrong)
    data = b"".join(p.read_bytes() for p in sqlite_path.parent.iterdir() if p.is_file())
    assert SECRET.encode() not in data and b"a-wrong-secret-1234" not in data
    assert "a-wrong-secret-1234" not in json.dumps(runs(db))


def test_endpoints() -> None:
    from catalog.sync.client import endpoint_for, parse_endpoints

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


@pytest.mark.parametrize(
    ("header", "value", "wait"),
    [
        ("x-acs-retry-after", "250", 0.25),
        ("Retry-After", "2", 2.0),
        ("Retry-After", "1.5", None),  # neither seconds nor a date: the backoff decides
        ("Retry-After", "soon", None),
        ("x-acs-retry-after", "-5", None),
    ],
)
def test_retry_after_headers(header: str, value: str, wait: float | None) -> None:
    response = requests.Response()
    response.headers[header] = value
    assert client_module.retry_after(response) == wait


def test_a_catalog_that_cannot_be_opened_asks_the_api_for_nothing(
    server: Any, tmp_path: Path
) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(catalog.CatalogError):
        sync(options(server), db_option=str(path), credentials=CREDS)
    assert server.requests == []
