"""The crawl against the fake API: pages stream into a sink in order, a check pass reads only
keys, a slow sink holds the fetchers back, and a disagreement or failure rolls the sink back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from catalog.errors import ApiError
from catalog.parse import records
from catalog.parse.records import ApiImage
from catalog.sync import crawl
from catalog.sync.client import ClientSettings, PaiClient
from tests.test_sync import CREDS, REGION, fake


@dataclass
class RecordingSink:
    """A sink that keeps what it is given, and how often it was opened and rolled back."""

    delay: float = 0.0
    fail_on_page: int | None = None
    server: Any = None
    pages: list[list[str]] = field(default_factory=list)
    served_at_add: list[int] = field(default_factory=list)
    prepared: set[str] = field(default_factory=set)
    opened: int = 0
    discarded: int = 0

    def open(self) -> None:
        self.opened += 1
        self.pages = []

    def read(self, body: Any, where: str) -> tuple[list[ApiImage], int | None]:
        images, total = records.parse_body(body, where)
        self.prepared.update(image.key for image in images)
        return images, total

    def add(self, images: list[ApiImage]) -> None:
        assert all(image.key in self.prepared for image in images)
        if self.server is not None:
            self.served_at_add.append(len(self.server.requests))
        if self.fail_on_page is not None and len(self.pages) + 1 == self.fail_on_page:
            raise RuntimeError("the sink failed")
        time.sleep(self.delay)
        self.pages.append([image.key for image in images])

    def discard(self) -> None:
        self.discarded += 1
        self.pages = []

    @property
    def keys(self) -> list[str]:
        return [key for page in self.pages for key in page]


@pytest.fixture
def api() -> Iterator[Any]:
    with fake.FakePaiApi({REGION: fake.synthetic_images(230, REGION)}) as server:
        yield server


@pytest.fixture
def client(api: Any) -> Iterator[PaiClient]:
    settings = ClientSettings(retries=2, backoff=0.001, backoff_cap=0.01, pool_size=8)
    client = PaiClient(REGION, api.url, CREDS, settings)
    yield client
    client.close()


def listed(api: Any) -> list[str]:
    return [image["ImageId"] for image in api.listing()]


def test_first_pass_streams_in_order_and_the_check_reads_only_keys(
    api: Any, client: PaiClient
) -> None:
    sink = RecordingSink()
    result = crawl.crawl(client.list_images_page, sink, page_size=50, workers=3)
    assert (result.total, result.pages, result.passes) == (230, 8, 2)
    assert [len(page) for page in sink.pages] == [50, 50, 50, 50, 30]
    assert sink.keys == listed(api)
    assert (sink.opened, sink.discarded) == (1, 0)
    asked = [(r.query["PageNumber"], r.query["PageSize"], r.query["Verbose"]) for r in api.requests]
    first, check = asked[:6], asked[6:]
    # Pages of 50 with labels, one past the end; then the check in large pages of keys.
    assert sorted(first) == [(str(n), "50", "true") for n in range(1, 7)]
    assert sorted(check) == [(str(n), str(crawl.CHECK_PAGE_SIZE), "false") for n in (1, 2)]


def test_the_check_grows_its_pages_so_that_they_all_go_out_at_once(
    api: Any, client: PaiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crawl, "CHECK_PAGE_SIZE", 20)
    sink = RecordingSink()
    result = crawl.crawl(client.list_images_page, sink, page_size=50, workers=3)
    assert sink.keys == listed(api) and result.passes == 2
    check = [r.query for r in api.requests if r.query["Verbose"] == "false"]
    # 230 keys in two pages of 115, and the empty one past them: one request per worker.
    assert sorted((q["PageNumber"], q["PageSize"]) for q in check) == [
        ("1", "115"),
        ("2", "115"),
        ("3", "115"),
    ]
    # Never below the listing's page size, never above CHECK_PAGE_MAX.
    sizes = [crawl.check_size(n, 50, 4) for n in (0, 3000, 3001, 6000, 10**6)]
    assert sizes == [50, 1000, 1001, 2000, crawl.CHECK_PAGE_MAX]


def test_the_check_follows_a_server_that_caps_its_large_pages(api: Any, client: PaiClient) -> None:
    api.faults.page_size_cap = 40
    sink = RecordingSink()
    result = crawl.crawl(client.list_images_page, sink, page_size=50, workers=3)
    assert sink.keys == listed(api)
    assert [len(page) for page in sink.pages] == [40] * 5 + [30]
    assert (result.pages, result.passes) == (7 + 7, 2)


def test_a_server_that_refuses_large_pages_is_checked_in_the_listing_s_pages(
    api: Any, client: PaiClient
) -> None:
    api.faults.page_size_limit = 100
    sink = RecordingSink()
    said: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("catalog.sync.crawl")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the level cache
    try:
        result = crawl.crawl(client.list_images_page, sink, page_size=50, workers=3)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert sink.keys == listed(api) and (sink.opened, sink.discarded) == (1, 0)
    assert (result.pages, result.passes) == (6 + 6, 2)
    refused = [r for r in api.requests if r.code == "InvalidParameter.PageSize"]
    # Page 1 of the check and the one past it were asked for together, and both refused.
    assert [r.query["PageSize"] for r in refused] == [str(crawl.CHECK_PAGE_SIZE)] * 2
    assert any(line.endswith("checking in pages of 50") for line in said), said


def test_a_refused_listing_page_size_is_an_error_not_a_retry(api: Any, client: PaiClient) -> None:
    api.faults.page_size_limit = 20
    sink = RecordingSink()
    with pytest.raises(ApiError, match=r"InvalidParameter\.PageSize") as raised:
        crawl.crawl(client.list_images_page, sink, page_size=50, workers=3)
    assert raised.value.status == 400 and len(api.requests) == 1
    assert sink.discarded == 1 and sink.pages == []


def test_without_verify_one_pass_is_enough(api: Any, client: PaiClient) -> None:
    sink = RecordingSink()
    result = crawl.crawl(client.list_images_page, sink, page_size=50, verify=False)
    assert (result.pages, result.passes, sink.keys) == (6, 1, listed(api))


def test_a_slow_sink_holds_the_fetchers_back(client: PaiClient) -> None:
    workers = 2
    with fake.FakePaiApi({REGION: fake.synthetic_images(400, REGION)}) as server:
        slow = PaiClient(REGION, server.url, CREDS, client.settings)
        sink = RecordingSink(delay=0.01, server=server)
        try:
            crawl.crawl(slow.list_images_page, sink, page_size=10, workers=workers, verify=False)
        finally:
            slow.close()
    assert len(sink.pages) == 40
    # When page n is handed over, at most the window (2 x workers) of later pages were asked for.
    ahead = [served - n for n, served in enumerate(sink.served_at_add, start=1)]
    assert max(ahead) <= 2 * workers, ahead


def test_passes_that_disagree_roll_the_sink_back(api: Any, client: PaiClient) -> None:
    # After the first pass's six pages, two images go and two new ones come: the counts stay
    # right, only which images are listed changes.
    api.faults.drift_after = 6
    api.faults.drift_delete = 2
    api.faults.drift_insert = 2
    sink = RecordingSink()
    result = crawl.crawl(client.list_images_page, sink, page_size=50, workers=2)
    assert result.passes == 3  # stored, disagreed; stored again, agreeing with the check
    assert (sink.opened, sink.discarded) == (2, 1)
    assert sink.keys == listed(api) and len(sink.keys) == 230


def test_a_failing_sink_stops_the_crawl_and_is_rolled_back(api: Any, client: PaiClient) -> None:
    sink = RecordingSink(fail_on_page=2)
    with pytest.raises(RuntimeError, match="the sink failed"):
        crawl.crawl(client.list_images_page, sink, page_size=10, workers=2)
    assert sink.discarded == 1 and sink.pages == []
    assert len(api.requests) <= 2 + 2 * 2  # page 1, page 2 and at most one window more


def test_an_empty_listing_reads_page_one_per_pass() -> None:
    with fake.FakePaiApi({REGION: []}) as server:
        client = PaiClient(REGION, server.url, CREDS, ClientSettings(retries=0))
        sink = RecordingSink()
        try:
            result = crawl.crawl(client.list_images_page, sink, page_size=50)
        finally:
            client.close()
    assert (result.total, result.pages, result.passes, sink.keys) == (0, 2, 2, [])


def test_a_throttled_request_holds_every_worker(api: Any, client: PaiClient) -> None:
    api.faults.throttle_every = 10  # every tenth request, with a 300 ms wait asked for
    api.faults.retry_after_ms = 300
    sink = RecordingSink()
    crawl.crawl(client.list_images_page, sink, page_size=10, workers=6, verify=False)
    assert sink.keys == listed(api)
    throttled = [r.time for r in api.requests if r.code == "Throttling.User"]
    assert len(throttled) >= 2
    for moment in throttled:
        # The requests under way when the answer came may still land just after it; nothing
        # is sent after that until the wait is over.
        during = [r for r in api.requests if moment + 0.05 < r.time < moment + 0.29]
        assert during == [], (moment, [(r.time, r.query["PageNumber"]) for r in during])


def test_the_check_starts_once_the_pass_is_read_while_the_sink_still_stores(
    client: PaiClient,
) -> None:
    with fake.FakePaiApi({REGION: fake.synthetic_images(400, REGION)}) as server:
        slow = PaiClient(REGION, server.url, CREDS, client.settings)
        sink = RecordingSink(delay=0.02, server=server)
        try:
            result = crawl.crawl(slow.list_images_page, sink, page_size=10, workers=4)
        finally:
            slow.close()
        requests = list(server.requests)
    assert result.passes == 2 and len(sink.pages) == 40
    first = [r for r in requests if r.query["Verbose"] == "true"]
    check = [r for r in requests if r.query["Verbose"] == "false"]
    assert len(first) == 41 and len(check) == 2  # 400 keys fit one page, then the empty one
    # Every page of the stored pass had come back before the check asked for anything (the
    # server logs each request as it answers it)...
    verbose = [r.query["Verbose"] for r in requests]
    assert verbose == ["true"] * len(first) + ["false"] * len(check)
    # ...and the check was answered while the sink still had pages to take.
    assert sink.served_at_add[-1] == len(requests)


def test_a_failing_sink_stops_the_check_already_under_way(
    client: PaiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crawl, "CHECK_PAGE_SIZE", 20)  # a check of 21 pages, started early
    monkeypatch.setattr(crawl, "CHECK_PAGE_MAX", 20)
    with fake.FakePaiApi({REGION: fake.synthetic_images(400, REGION)}) as server:
        server.faults.latency = 0.05
        slow = PaiClient(REGION, server.url, CREDS, client.settings)
        sink = RecordingSink(delay=0.03, fail_on_page=40, server=server)
        asked = {"in flight": 0, "checks": 0}
        answered = threading.Condition()

        def fetch(number: int, size: int, verbose: bool) -> Any:
            with answered:
                asked["in flight"] += 1
                asked["checks"] += not verbose
            try:
                return slow.list_images_page(number, size, verbose)
            finally:
                with answered:
                    asked["in flight"] -= 1
                    answered.notify_all()

        try:
            with pytest.raises(RuntimeError, match="the sink failed"):
                crawl.crawl(fetch, sink, page_size=10, workers=4)
            # The crawl may return before requests under way come back; once they have, the
            # server has logged every one (it logs a request before it answers).
            with answered:
                assert answered.wait_for(lambda: asked["in flight"] == 0, timeout=30)
        finally:
            slow.close()
        check = [r for r in server.requests if r.query["Verbose"] == "false"]
    assert sink.discarded == 1 and sink.pages == []
    assert len(check) == asked["checks"]
    # The check had started before the sink failed, and asked for nothing after it.
    assert 0 < len(check) < 21, len(check)


def test_a_closed_client_makes_no_further_attempt(api: Any, client: PaiClient) -> None:
    client.close()
    with pytest.raises(ApiError, match="the client is closed"):
        client.list_images_page(1, 50)
    assert api.requests == []
