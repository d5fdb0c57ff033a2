"""Pages read in a helper process: the same images and rows as read here, and every failure of
the helper leaves the page to the sync, which loses nothing."""

from __future__ import annotations

import io
import pickle
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog.errors import InputError
from catalog.parse import records, tags
from catalog.store import pages
from catalog.sync.run import sync
from tests.dbkit import CatalogDb, dump
from tests.test_sync import CREDS, REGION, fake, options

BODY = {"Images": fake.synthetic_images(120, REGION), "TotalCount": 120}


def ready(helper: pages.Helper) -> pages.Helper:
    deadline = time.monotonic() + 30
    while not helper.ready and not helper.stopped and time.monotonic() < deadline:
        time.sleep(0.01)
    assert helper.ready
    return helper


@pytest.fixture
def helper() -> Iterator[pages.Helper]:
    started = pages.Helper.start(REGION, {})
    if started is None:
        pytest.skip("a helper needs two cores")
    yield ready(started)
    started.close()


def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many pages the helper answered, and how many it left to the caller."""
    seen = {"helper": 0, "here": 0}
    read = pages.Helper.read

    def spy(self: pages.Helper, body: Any, where: str) -> pages.Read | None:
        answer = read(self, body, where)
        seen["helper" if answer is not None else "here"] += 1
        return answer

    monkeypatch.setattr(pages.Helper, "read", spy)
    return seen


def test_the_helper_answers_what_a_read_here_gives(helper: pages.Helper) -> None:
    images = records.parse_body(BODY, "x")[0]
    stored = {images[0].key: images[0].content_hash, images[1].key: "another version"}
    helper.know(REGION, stored)
    answer = helper.read(BODY, "ListImages page 1")
    here = pages.read_page(
        BODY, "ListImages page 1", REGION, lambda i: stored.get(i.key) != i.content_hash
    )
    assert answer is not None
    assert answer[0] == here[0] and answer[1] == here[1] == 120
    assert [i.content_hash for i in answer[0]] == [i.content_hash for i in here[0]]
    # The image stored as it is needs no row; the one stored otherwise does.
    assert sorted(answer[2]) == list(range(1, 120)) and answer[2] == here[2]


def test_a_malformed_page_is_the_same_error_from_the_helper(helper: pages.Helper) -> None:
    body = {"Images": [{"ImageId": "a", "Size": "many"}], "TotalCount": 1}
    with pytest.raises(InputError) as here:
        pages.read_page(body, "ListImages page 3", REGION, lambda image: True)
    with pytest.raises(InputError) as there:
        helper.read(body, "ListImages page 3")
    assert str(there.value) == str(here.value) and "Size" in str(here.value)
    assert helper.read(BODY, "ListImages page 4") is not None  # and it goes on reading


def test_a_helper_that_dies_leaves_its_pages_to_the_caller(helper: pages.Helper) -> None:
    helper.process.kill()
    helper.process.wait()
    assert helper.read(BODY, "ListImages page 1") is None
    assert helper.stopped


def test_no_helper_where_it_cannot_run_or_would_not_pay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "helper_cores", lambda: 1)
    assert pages.Helper.start(REGION, {}) is None
    monkeypatch.setattr(pages, "helper_cores", lambda: 2)
    monkeypatch.setattr(pages.sys, "executable", "/nonexistent/python")
    assert pages.Helper.start(REGION, {}) is None


def test_the_helper_gets_no_credentials_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s3cr3t-value")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    started = pages.Helper.start(REGION, {})
    if started is None:
        pytest.skip("a helper needs two cores")
    try:
        environ = Path(f"/proc/{started.process.pid}/environ").read_bytes().split(b"\0")
    finally:
        started.close()
    assert b"PYTHONPATH=/somewhere" in environ
    assert not [v for v in environ if b"s3cr3t-value" in v or v.startswith(b"ALIBABA_")]


def test_the_helper_runs_this_catalog_not_one_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    impostor = tmp_path / "catalog"
    impostor.mkdir()
    ran = tmp_path / "impostor-ran"
    (impostor / "__init__.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    started = pages.Helper.start(REGION, {})
    if started is None:
        pytest.skip("a helper needs two cores")
    try:
        assert ready(started).read(BODY, "ListImages page 1") is not None
    finally:
        started.close()
    assert not ran.exists()


def capture_pages_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """caplog gets what catalog.pages logs at INFO from now on, from any thread, even once a
    CLI run in this process has stopped the catalog logger's records reaching the root's."""
    caplog.set_level("INFO", logger=pages.log.name)
    monkeypatch.setattr(pages.log.parent, "propagate", True)


def test_a_helper_stuck_mid_page_does_not_hold_the_sync(
    helper: pages.Helper,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hang_guard: Any,
) -> None:
    monkeypatch.setattr(pages, "HELPER_TIMEOUT", 0.5)
    big = {"Images": fake.synthetic_images(1000, REGION), "TotalCount": 1000}  # over a pipe's worth
    capture_pages_log(caplog, monkeypatch)
    helper.process.send_signal(signal.SIGSTOP)  # alive, reading nothing
    with hang_guard(60):  # without the watchdog, the write into the full pipe never returns
        assert helper.read(big, "ListImages page 1") is None
        helper.close()  # returns, though the helper reads nothing
    assert set(caplog.messages) == {"the page helper took nothing in 0.5 s; reading pages here"}
    assert helper.process.wait(timeout=10) == -signal.SIGKILL


def synced(path: Path, api: Any, monkeypatch: pytest.MonkeyPatch, least: int) -> list[str]:
    """A sync of ``api`` into a new file, the helper taking listings of ``least`` images or
    more, and every page once it is ready; the file's rows."""
    monkeypatch.setattr(pages, "HELPER_MIN_IMAGES", least)
    start = pages.Helper.start

    def started(region: str, stored: Any) -> pages.Helper | None:
        helper = start(region, stored)
        return ready(helper) if helper is not None else None

    monkeypatch.setattr(pages.Helper, "start", started)
    db = CatalogDb.file(path)
    [result] = sync(options(api, workers=4), db_option=db.target, credentials=CREDS)
    assert result.ok and result.seen == 600
    return dump(db)


@pytest.fixture
def listing() -> Iterator[Any]:
    with fake.FakePaiApi({REGION: fake.synthetic_images(600, REGION)}) as api:
        yield api


def test_a_large_listing_is_read_in_the_helper_and_stored_alike(
    listing: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", "1767225600")
    seen = counted(monkeypatch)
    here = synced(tmp_path / "here.db", listing, monkeypatch, least=10**9)
    assert seen == {"helper": 0, "here": 0}
    there = synced(tmp_path / "there.db", listing, monkeypatch, least=100)
    assert seen == {"helper": 13, "here": 0}  # 12 pages of 50, and the empty one past them
    assert there == here


def test_a_helper_killed_mid_sync_loses_nothing(
    listing: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", "1767225600")
    here = synced(tmp_path / "here.db", listing, monkeypatch, least=10**9)
    seen = counted(monkeypatch)
    read = pages.Helper.read  # the spy

    def kill_after_three(self: pages.Helper, body: Any, where: str) -> pages.Read | None:
        if seen["helper"] >= 3:
            self.process.kill()
        return read(self, body, where)

    monkeypatch.setattr(pages.Helper, "read", kill_after_three)
    there = synced(tmp_path / "there.db", listing, monkeypatch, least=100)
    assert seen["helper"] >= 3 and seen["here"] >= 1, seen
    assert there == here


def test_the_helper_forgets_the_tags_it_has_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "HELPER_CACHE_IMAGES", 100)
    images = fake.synthetic_images(360, REGION)
    messages, answers = io.BytesIO(), io.BytesIO()
    for n in range(3):
        body = {"Images": images[n * 120 : (n + 1) * 120], "TotalCount": 360}
        pickle.dump(("page", n, body, f"ListImages page {n + 1}"), messages)
    messages.seek(0)
    tags.clear_caches()
    pages.serve(messages, answers)  # the helper's side, here: until its input ends
    answers.seek(0)
    assert pickle.load(answers) == ("ready",)
    said = [pickle.load(answers) for _ in range(3)]
    assert [(ident, status, len(payload[1])) for ident, status, payload in said] == [
        (n, "ok", 120) for n in range(3)
    ]
    # It forgot the first pages' tags before it read the last one.
    assert 0 < tags.parse_tag.cache_info().currsize <= 120


def test_a_helper_that_stops_answering_is_stopped_and_its_pages_read_here(
    helper: pages.Helper,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hang_guard: Any,
) -> None:
    monkeypatch.setattr(pages, "HELPER_TIMEOUT", 0.5)
    capture_pages_log(caplog, monkeypatch)
    helper.process.send_signal(signal.SIGSTOP)  # alive, but answering nothing
    with hang_guard(60):
        assert helper.read(BODY, "ListImages page 1") is None
    # Given up on at the timeout, not for another reason (a stopped helper, a failed write).
    assert set(caplog.messages) == {"the page helper did not answer in 0.5 s; reading pages here"}
    assert helper.process.wait(timeout=10) == -signal.SIGKILL
    assert helper.read(BODY, "ListImages page 2") is None  # at once: it is stopped


def test_the_helper_knows_what_is_stored_and_reads_no_rows_for_it(
    listing: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[int] = []
    read = pages.Helper.read

    def spy(self: pages.Helper, body: Any, where: str) -> pages.Read | None:
        answer = read(self, body, where)
        assert answer is not None  # synced() waits until the helper is ready
        rows.append(len(answer[2]))
        return answer

    monkeypatch.setattr(pages.Helper, "read", spy)
    synced(tmp_path / "c.db", listing, monkeypatch, least=100)
    assert sum(rows) == 600
    rows.clear()
    images = listing.images(REGION)
    images[7]["Name"] = "renamed"  # one change since
    with fake.FakePaiApi({REGION: images}) as changed:
        synced(tmp_path / "c.db", changed, monkeypatch, least=100)
    assert len(rows) == 13 and sum(rows) == 1
