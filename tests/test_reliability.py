"""Sync under injected faults, SIGKILL and concurrency: the catalog is right, or it is untouched."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from catalog.parse import records
from catalog.sync.client import ClientSettings
from catalog.sync.run import RegionResult, SyncOptions, sync
from tests.dbkit import CatalogDb, Databases, dump, sqlite_dump
from tests.test_sync import CREDS, REGION, SECRET, fake

# Slow: run by `python -m pytest -m slow` (CI runs both).
pytestmark = pytest.mark.slow

# The tables that hold the catalog itself; sync_run is the only one a failed run may touch.
CATALOG_TABLES = ("image", "image_version", "image_label", "image_scope", "image_event")
MATRIX_IMAGES = 120
ENV = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-ak",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
    "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
}
FOREVER = 10**6  # a budget no run can spend


# --- helpers shared by the matrix, kill and concurrency tests ---------------------------------


def catalog_dump(db: CatalogDb) -> list[str]:
    """The dump of everything but sync_run."""
    return dump(db, skip=("sync_run",))


def run_rows(db: CatalogDb) -> list[dict[str, Any]]:
    return db.dicts("SELECT * FROM sync_run ORDER BY id")


def stored_listing(
    db: CatalogDb, region: str = REGION
) -> dict[str, tuple[str, str | None, tuple[Any, ...]]]:
    """Live images of a region: {image key: (content hash, uri, sorted labels)}."""
    labels: dict[int, list[tuple[str, str | None]]] = {}
    query = (
        "SELECT l.version_id, l.key, l.value FROM image_label l "
        "JOIN image_version v ON v.id = l.version_id WHERE v.valid_to IS NULL"
    )
    for vid, key, value in db.rows(query):
        labels.setdefault(vid, []).append((key, value))
    rows = db.rows(
        "SELECT v.id, v.image_id, v.content_hash, v.uri, v.is_latest, i.removed_run_id "
        "FROM image_version v JOIN image i ON i.id = v.image_pk "
        "WHERE v.valid_to IS NULL AND v.region = :region",
        {"region": region},
    )
    # A live version is the latest one and belongs to an image that is not removed.
    assert all(row[4] == 1 and row[5] is None for row in rows), rows[:3]
    return {row[1]: (row[2], row[3], tuple(sorted(labels.get(row[0], [])))) for row in rows}


def expected_listing(
    served: list[dict[str, Any]],
) -> dict[str, tuple[str, str | None, tuple[Any, ...]]]:
    """What the catalog must hold for this served listing."""
    expected = {}
    for n, obj in enumerate(served):
        image = records.parse_image(obj, f"served image {n}")
        # The URI is compared with what the API sent, not with what parsing made of it.
        uri = obj.get("ImageUri")
        expected[image.key] = (image.content_hash, uri, tuple(sorted(image.labels)))
    return expected


def assert_catalog_equals(db: CatalogDb, served: list[dict[str, Any]]) -> None:
    stored, expected = stored_listing(db), expected_listing(served)
    missing, extra = (
        sorted(expected.keys() - stored.keys()),
        sorted(stored.keys() - expected.keys()),
    )
    assert not missing and not extra, (
        f"{len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}"
    )
    wrong = [key for key in expected if stored[key] != expected[key]]
    assert not wrong, f"{len(wrong)} images differ from the served ones, e.g. {wrong[:3]}"


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **ENV, **extra}


# --- the fault matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected fault: Faults fields to set, and what a sync must make of it alone."""

    name: str
    settings: dict[str, Any]
    expect: str  # "ok": the catalog equals the served set; "fail": a clean failure
    options: dict[str, Any] = field(default_factory=dict)


# Transport faults that stop: retried until an answer comes.
TRANSPORT = [
    Fault("throttle-400", {"throttle_first": 3, "throttle_status": 400}, "ok"),
    Fault("throttle-429", {"throttle_first": 3, "throttle_status": 429}, "ok"),
    Fault("throttle-503", {"throttle_first": 3, "throttle_status": 503}, "ok"),
    Fault("throttle-every-3rd", {"throttle_every": 3, "retry_after_ms": 5}, "ok"),
    Fault("5xx", {"error_5xx_first": 3}, "ok"),
    Fault("reset", {"reset_first": 3}, "ok"),
    Fault("hang", {"hang_first": 2, "hang_seconds": 1.0}, "ok"),
    Fault("malformed-json", {"malformed_first": 2}, "ok"),
    Fault("truncated", {"truncated_first": 2}, "ok"),
    Fault("wrong-content-type", {"wrong_content_type_first": 3}, "ok"),
]
# Listings that are odd but complete, or that cannot be trusted.
LISTINGS = [
    Fault("page-size-cap", {"page_size_cap": 10}, "ok"),
    Fault("missing-times-size", {"missing_fields": ("GmtCreateTime", "Size", "Name")}, "ok"),
    Fault("duplicate-once", {"duplicate_first": 1}, "ok"),
    Fault("drift-insert", {"drift_after": 2, "drift_insert": 3}, "ok"),
    Fault("drift-delete", {"drift_after": 2, "drift_delete": 3}, "ok"),
    Fault("drift-both", {"drift_after": 2, "drift_insert": 2, "drift_delete": 2}, "ok"),
]
# Listings that cannot be trusted, and faults that never stop: the run must fail cleanly.
ENDLESS = [
    Fault("duplicate-always", {"duplicate_first": FOREVER}, "fail"),
    Fault("total-count-high", {"total_count_lie": 7}, "fail"),
    Fault("total-count-low", {"total_count_lie": -7}, "fail"),
    # Short by whole pages: every page adds up, only the page past the end tells (bug 1 in
    # docs/RELIABILITY.md, fixed in 90e4b11: 20 of 120 images were stored as removed).
    Fault("total-count-short-a-page", {"total_count_lie": -20}, "fail"),
    Fault("missing-labels", {"missing_fields": ("Labels",)}, "fail"),
    Fault("missing-image-id", {"missing_fields": ("ImageId",)}, "fail"),
    Fault("missing-id-and-uri", {"missing_fields": ("ImageId", "ImageUri")}, "fail"),
    Fault("zero-images", {"zero_images": True}, "fail"),
    Fault("vanish-mid-crawl", {"drift_after": 2, "drift_delete": FOREVER}, "fail"),
    Fault("always-throttled", {"always_error": "Throttling.User", "throttle_status": 429}, "fail"),
    Fault("always-5xx", {"error_5xx_first": FOREVER}, "fail"),
    Fault("always-reset", {"reset_first": FOREVER}, "fail"),
    Fault("always-hang", {"hang_first": FOREVER, "hang_seconds": 1.0}, "fail", {"retries": 2}),
    Fault("always-malformed", {"malformed_first": FOREVER}, "fail"),
    Fault("always-truncated", {"truncated_first": FOREVER}, "fail"),
    Fault("auth-refused", {"always_error": "InvalidAccessKeyId.NotFound"}, "fail"),
]
FAULTS = TRANSPORT + LISTINGS + ENDLESS


def _compatible(a: Fault, b: Fault) -> bool:
    """Two faults combine when they set different Faults fields (one knob cannot be two values)."""
    return not (a.settings.keys() & b.settings.keys())


def all_pairs() -> list[tuple[Fault, Fault]]:
    return [(a, b) for a, b in itertools.combinations(FAULTS, 2) if _compatible(a, b)]


def default_pairs() -> list[tuple[Fault, Fault]]:
    """The short matrix: every transport fault with every odd listing (retries while the crawl
    starts over), and every endless fault beside a transport fault (a clean failure in noise)."""
    pairs = [(a, b) for a in TRANSPORT for b in LISTINGS]
    pairs += [(TRANSPORT[n % len(TRANSPORT)], b) for n, b in enumerate(ENDLESS)]
    return [(a, b) for a, b in pairs if _compatible(a, b)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault_pair" in metafunc.fixturenames:
        pairs = all_pairs() if metafunc.config.getoption("--long") else default_pairs()
        metafunc.parametrize("fault_pair", pairs, ids=[f"{a.name}+{b.name}" for a, b in pairs])


@pytest.fixture(scope="session")
def first_catalog(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CatalogDb]:
    """A catalog after one good sync of the matrix's images; each case starts from a copy."""
    first = databases.empty(tmp_path_factory.mktemp("first"))
    with fake.FakePaiApi({REGION: fake.synthetic_images(MATRIX_IMAGES, REGION)}) as api:
        [result] = sync(matrix_options(api), db_option=first.target, credentials=CREDS)
    assert result.ok, result.error
    if first.path is not None:  # checkpointed: one file to copy
        assert not first.path.with_name(first.path.name + "-wal").exists()
    # "Unchanged" must compare something: every catalog table has rows to compare.
    dumped = catalog_dump(first)
    for table in CATALOG_TABLES:
        assert any(line.startswith(f"{table} ") for line in dumped), table
    yield first
    databases.drop(first)


@pytest.fixture
def first_copy(
    databases: Databases, first_catalog: CatalogDb, tmp_path: Path
) -> Iterator[CatalogDb]:
    """A copy of the first catalog for one case."""
    copy = databases.copy(first_catalog, tmp_path)
    yield copy
    databases.drop(copy)


def matrix_options(api: Any, **overrides: Any) -> SyncOptions:
    client = ClientSettings(
        connect_timeout=1.0,
        read_timeout=0.5,
        retries=overrides.pop("retries", 8),
        backoff=0.001,
        backoff_cap=0.01,
    )
    return SyncOptions(
        **{"regions": (REGION,), "endpoints": {"": api.url}, "page_size": 25, "client": client}
        | overrides
    )


@dataclass
class Trial:
    result: RegionResult
    served: list[dict[str, Any]]
    db: CatalogDb
    before: list[str]
    runs_before: int


def run_with_faults(db: CatalogDb, *faults: Fault) -> Trial:
    before, runs_before = catalog_dump(db), len(run_rows(db))
    options: dict[str, Any] = {}
    with fake.FakePaiApi({REGION: fake.synthetic_images(MATRIX_IMAGES, REGION)}) as api:
        for fault in faults:
            options |= fault.options
            for name, value in fault.settings.items():
                setattr(api.faults, name, value)
        [result] = sync(matrix_options(api, **options), db_option=db.target, credentials=CREDS)
        served = api.listing()
    return Trial(result, served, db, before, runs_before)


def outcome(trial: Trial) -> str:
    """'ok' or 'fail', after checking that it is exactly one of the two allowed outcomes."""
    runs = run_rows(trial.db)
    assert len(runs) == trial.runs_before + 1, "a run must record exactly one sync_run row"
    last, result = runs[-1], trial.result
    if result.ok:
        assert last["status"] == "ok" and last["id"] == result.run_id
        assert_catalog_equals(trial.db, trial.served)
        return "ok"
    assert result.error and "\n" not in result.error and "Traceback" not in result.error
    assert (last["status"], last["error"]) == ("failed", result.error) or (
        last["status"] == "failed" and last["error"] and result.error.endswith(last["error"])
    ), (last, result.error)
    after = catalog_dump(trial.db)
    assert after == trial.before, "a failed run changed the catalog tables"
    return "fail"


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_each_fault_alone(first_copy: CatalogDb, fault: Fault) -> None:
    trial = run_with_faults(first_copy, fault)
    assert outcome(trial) == fault.expect, trial.result.error


def test_fault_pairs(first_copy: CatalogDb, fault_pair: tuple[Fault, Fault]) -> None:
    first, second = fault_pair
    trial = run_with_faults(first_copy, first, second)
    # A fault that never stops still wins beside another; two that stop are both outlasted.
    expected = "fail" if "fail" in (first.expect, second.expect) else "ok"
    assert outcome(trial) == expected, trial.result.error


# --- SIGKILL at many points of a sync -------------------------------------------------------

# (images served, kill points): 8 of 20 over the crawl, 12 over the store phase and its commit
KILLS = (10_000, 20)
LONG_KILLS = (25_000, 100)


def sync_command(db: Path | CatalogDb, api: Any, *extra: str) -> list[str]:
    target = db.target if isinstance(db, CatalogDb) else str(db)
    return [
        sys.executable, "-m", "catalog", "--db", target, "sync", "--region", REGION,
        "--endpoint", api.url, "--page-size", "1000", "--backoff", "0", "--timeout", "30", *extra,
    ]  # fmt: skip


def restore(pristine: Path, db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(pristine, db)


def integrity(db: Path) -> tuple[str, list[Any]]:
    conn = sqlite3.connect(db)
    try:
        checked = conn.execute("PRAGMA integrity_check").fetchone()[0]
        return checked, conn.execute("PRAGMA foreign_key_check").fetchall()
    finally:
        conn.close()


@dataclass
class Timeline:
    """Seconds from Popen to: the first request, the last, the first WAL write, the exit."""

    first_request: float
    last_request: float
    first_write: float
    end: float

    def kill_times(self, count: int) -> list[float]:
        """30% before the first write, 20% while pages are still arriving and being written,
        and half over the rest of the writing and COMMIT, where a kill can leave a half-written
        transaction behind."""
        crawl, streaming = round(count * 0.3), round(count * 0.2)
        write = count - crawl - streaming
        writes_from = min(self.first_write, self.last_request)
        spans = [
            (self.first_request, writes_from, crawl),
            (writes_from, self.last_request, streaming),
            (self.last_request, self.end, write),
        ]
        return [start + (end - start) * (n + 0.5) / k for start, end, k in spans for n in range(k)]


def timed_sync(command: list[str], api: Any, db: Path) -> Timeline:
    """Run one sync to the end, watching the requests it makes and when it starts writing."""
    seen, wal = len(api.requests), db.with_name(db.name + "-wal")
    started_wall, started = time.time(), time.monotonic()
    process = subprocess.Popen(
        command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first_write = None
    while process.poll() is None:
        if first_write is None and wal.exists() and wal.stat().st_size > 0:
            first_write = time.monotonic() - started
        time.sleep(0.005)
    end = time.monotonic() - started
    assert process.returncode == 0, process.communicate()[1]
    times = [entry.time - started_wall for entry in api.requests[seen:]]
    # The store writes the first pass while later pages are still arriving.
    assert first_write is not None and min(times) < first_write
    return Timeline(min(times), max(times), first_write, end)


def kill_at(command: list[str], api: Any, delay: float, requests_per_run: int) -> str:
    """SIGKILL a sync ``delay`` seconds in; the phase it was in, or "" if it ended first."""
    served_before = len(api.requests)
    process = subprocess.Popen(
        command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    if process.wait(timeout=30) != -signal.SIGKILL:
        return ""
    return "store" if len(api.requests) - served_before >= requests_per_run else "crawl"


def kill_served(images: list[dict[str, Any]], changed: int) -> list[dict[str, Any]]:
    """The listing the killed syncs read: every image, the first ``changed`` rebuilt."""
    served = [dict(image) for image in images]
    for image in served[:changed]:
        image["Description"] += " (rebuilt)"
        image["GmtModifiedTime"] = "2026-11-01T00:00:00Z"
    return served


@dataclass
class Kill:
    delay: float
    phase: str  # "store" once the run had written to the -wal file, "crawl" before
    state: str  # "intact" (the previous catalog) or "committed" (the whole new run)
    wrote: bool  # the WAL held frames: killed in the middle of writing or just after


@dataclass
class Killer:
    """Kills syncs of ``api`` into copies of ``pristine`` and checks each corpse."""

    api: Any
    pristine: Path
    db: Path
    requests_per_run: int
    kills: list[Kill] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.before = sqlite_dump(self.pristine)

    def kill(self, delay: float) -> None:
        phase = ""
        while not phase:  # a run faster than the learned one may finish first: kill earlier
            restore(self.pristine, self.db)
            command = sync_command(self.db, self.api)
            phase = kill_at(command, self.api, delay, self.requests_per_run)
            delay = delay if phase else delay * 0.9
        wal = self.db.with_name(self.db.name + "-wal")
        wrote = wal.exists() and wal.stat().st_size > 0
        checked = integrity(self.db)
        assert checked == ("ok", []), (delay, phase, checked)
        after = sqlite_dump(self.db)
        state = "intact"
        if after != self.before:  # killed after its COMMIT: then the whole run must be there
            runs = run_rows(CatalogDb.file(self.db))
            new = sorted(set(after) - set(self.before))[:5]
            assert runs[-1]["status"] == "ok" and len(runs) == 2, (delay, runs, new)
            assert_catalog_equals(CatalogDb.file(self.db), self.api.listing())
            state = "committed"
        assert all(run["status"] != "running" for run in run_rows(CatalogDb.file(self.db)))
        # Pages are stored while later ones are fetched: what the run had written, not how
        # many requests it had made, tells whether the kill struck the store.
        phase = "store" if wrote or state == "committed" else "crawl"
        self.kills.append(Kill(delay, phase, state, wrote))

    def count(self, phase: str = "", mid_write: bool = False) -> int:
        return sum(
            1
            for k in self.kills
            if (not phase or k.phase == phase)
            and (not mid_write or (k.wrote and k.state == "intact"))
        )

    def report(self) -> str:
        return "; ".join(
            f"{k.delay:.2f}s {k.phase} {k.state}{' wal' if k.wrote else ''}" for k in self.kills
        )


def page_helpers(mark: str) -> set[str]:
    """The page helpers running now (their command names catalog.pages) whose environment
    holds ``mark``: those of this test's syncs, not of anything else on the machine."""
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            helper = b"catalog.store.pages" in (proc / "cmdline").read_bytes()
            if helper and mark.encode() in (proc / "environ").read_bytes():
                found.add(proc.name)
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@contextmanager
def helpers_seen(mark: str) -> Iterator[set[str]]:
    """Every page helper marked ``mark`` that ran while the block ran."""
    seen: set[str] = set()
    done = threading.Event()

    def look() -> None:
        while not done.wait(0.05):
            seen.update(page_helpers(mark))

    watcher = threading.Thread(target=look, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def page_helpers_left(mark: str, wait: float = 5.0) -> set[str]:
    """The page helpers marked ``mark`` still running after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while (left := page_helpers(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_sigkill_at_many_points_never_loses_the_catalog(
    tmp_path: Path, long_run: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    size, count = LONG_KILLS if long_run else KILLS
    # The syncs' page helpers keep PYTHONPATH: a directory that is not there marks them.
    mark = str(tmp_path / "helper-mark")
    paths = [p for p in (os.environ.get("PYTHONPATH"), mark) if p]
    monkeypatch.setitem(ENV, "PYTHONPATH", os.pathsep.join(paths))
    images = fake.synthetic_images(size, REGION)
    previous = images[: size // 10]
    pristine, db = tmp_path / "pristine.db", tmp_path / "catalog.db"
    with fake.FakePaiApi({REGION: previous}) as api:
        [first] = sync(
            matrix_options(api, page_size=1000), db_option=str(pristine), credentials=CREDS
        )
    assert first.ok, first.error
    served = kill_served(images, changed=len(previous) // 2)

    with fake.FakePaiApi({REGION: served}) as api, helpers_seen(mark) as helpers:
        restore(pristine, db)
        timeline = timed_sync(sync_command(db, api), api, db)
        assert_catalog_equals(CatalogDb.file(db), api.listing())
        killer = Killer(api, pristine, db, requests_per_run=len(api.requests))
        planned = timeline.kill_times(count)
        # A fixed seed, so that a run can be repeated; PAI_CATALOG_TEST_SEED picks others.
        rng = random.Random(seed := int(os.environ.get("PAI_CATALOG_TEST_SEED", "0")))
        if long_run:  # half of them at random points, as an independent check would pick them
            print(f"\nrandom kill points from seed {seed}")
            spread = [rng.uniform(timeline.first_request, timeline.end) for _ in planned[1::2]]
            planned = planned[::2] + spread
        for delay in planned:
            killer.kill(delay)
        # Runs vary (other work on the machine): top up a phase the plan missed, within reason.
        t = timeline
        for _ in range(count // 2):
            if killer.count("crawl") < count // 4:
                killer.kill(rng.uniform(t.first_request, min(t.first_write, t.last_request)))
            elif killer.count("store") < count // 4 or killer.count(mid_write=True) < count // 10:
                killer.kill(rng.uniform(min(t.first_write, t.last_request), t.end))
        finished = subprocess.run(
            sync_command(db, api), env=subprocess_env(), capture_output=True, text=True
        )
        assert finished.returncode == 0, finished.stderr
        assert_catalog_equals(CatalogDb.file(db), api.listing())
    # Syncs this large read their pages in helpers, and none outlives its sync, killed or not:
    # each ends with its input.
    assert len(helpers) >= count // 2, helpers
    assert page_helpers_left(mark) == set()
    # The kill points must really cover both phases, and some must land in the middle of writing.
    assert len(killer.kills) >= count, killer.report()
    assert killer.count("crawl") >= count // 4, killer.report()
    assert killer.count("store") >= count // 4, killer.report()
    assert killer.count(mid_write=True) >= count // 10, killer.report()
    print(f"\n{timeline}\n{len(killer.kills)} kills: {killer.report()}")


# --- two syncs at once, and readers during a sync -------------------------------------------

LOCKED = "Error: {who} is writing {db}; let it finish, or pass --wait to start when it does.\n"


def started_together(commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    processes = [
        subprocess.Popen(
            command,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    done = []
    for process, command in zip(processes, commands, strict=True):
        out, err = process.communicate(timeout=120)
        result = subprocess.CompletedProcess(command, process.returncode, out, err)
        result.pid = process.pid  # type: ignore[attr-defined]
        done.append(result)
    return done


def assert_runs_do_not_overlap(db: CatalogDb) -> list[dict[str, Any]]:
    runs = run_rows(db)
    for earlier, later in itertools.pairwise(runs):
        assert earlier["finished_at"] <= later["started_at"], (earlier, later)
    return runs


@pytest.fixture
def slow_api() -> Iterator[Any]:
    """120 images on pages of 10 at 100 ms each: a sync holds its lock for over two seconds,
    far longer than two processes started together take to reach it."""
    with fake.FakePaiApi({REGION: fake.synthetic_images(MATRIX_IMAGES, REGION)}) as api:
        api.faults.latency = 0.1
        yield api


def test_two_syncs_started_together_one_runs_one_is_refused(
    catalog_db: CatalogDb, slow_api: Any
) -> None:
    command = sync_command(catalog_db, slow_api, "--page-size", "10", "--workers", "1")
    results = started_together([command, command])
    assert sorted(result.returncode for result in results) == [0, 75], results
    [refused] = [result for result in results if result.returncode == 75]
    # A server locks each region, so that syncs of different regions run side by side. A file's
    # lock names the process that holds it.
    where = catalog_db.display if catalog_db.path else f"{REGION} in {catalog_db.display}"
    [winner] = [result for result in results if result.returncode == 0]
    # A file's lock names the holder's pid; a server's, the pid of the holder's lock session.
    who = f"A pai-catalog sync (pid {winner.pid})"  # type: ignore[attr-defined]
    expected = re.escape(LOCKED.format(who=who, db=where))
    if not catalog_db.path:
        pid = re.escape(f"(pid {winner.pid})")  # type: ignore[attr-defined]
        expected = expected.replace(pid, r"\(server pid \d+\)")
    assert refused.stdout == "" and re.fullmatch(expected, refused.stderr), refused.stderr
    runs = assert_runs_do_not_overlap(catalog_db)
    assert [run["status"] for run in runs] == ["ok"]  # the refused one wrote nothing at all
    assert_catalog_equals(catalog_db, slow_api.listing())


def test_three_syncs_with_wait_take_turns(catalog_db: CatalogDb, slow_api: Any) -> None:
    slow_api.faults.latency = 0.05
    slow_api.faults.drift_after, slow_api.faults.drift_insert = 25, 4  # during the second
    command = sync_command(catalog_db, slow_api, "--page-size", "10", "--workers", "1", "--wait")
    results = started_together([command] * 3)
    assert [result.returncode for result in results] == [0, 0, 0], results
    runs = assert_runs_do_not_overlap(catalog_db)
    assert [run["status"] for run in runs] == ["ok", "ok", "ok"]
    assert sum(run["added"] for run in runs) == MATRIX_IMAGES + 4
    assert_catalog_equals(catalog_db, slow_api.listing())


READER = """
import json, subprocess, sys
from pathlib import Path
from click.testing import CliRunner
from catalog.cli.main import main

db, stop, log, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
args = ["--db", db, "resolve", "pytorch", "--json"]
runner = CliRunner()
with open(log, "w", encoding="utf-8") as out:
    while True:
        last = stop.exists()
        if mode == "process":  # as a user or a script runs it: a new process each time
            done = subprocess.run([sys.executable, "-m", "catalog", *args], capture_output=True,
                                  text=True)
            answer = {"exit": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
        else:  # as a service would: one process, its reader and answers kept between calls
            result = runner.invoke(main, args)
            answer = {"exit": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                answer["exception"] = repr(result.exception)
        out.write(json.dumps(answer) + "\\n")
        out.flush()
        if last:
            break
"""


def rebuilt(images: list[dict[str, Any]], top_id: str) -> list[dict[str, Any]]:
    """Every image's description changed (a long write), and the resolve answer rebuilt:
    a new Name and one more label, so a reader mixing old and new rows would show it."""
    served = [dict(image, Description=image["Description"] + " (rebuilt)") for image in images]
    for image in served:
        if image["ImageId"] == top_id:
            image["Name"] += "-rebuilt"
            image["Labels"] = [*image["Labels"], {"Key": "system.rebuilt", "Value": "true"}]
    return served


def resolve_answer(db: CatalogDb) -> str:
    command = [sys.executable, "-m", "catalog", "--db", db.target, "resolve", "pytorch", "--json"]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout


def test_readers_see_the_old_or_the_new_catalog_never_an_error_or_a_mix(
    catalog_db: CatalogDb, tmp_path: Path
) -> None:
    images = fake.synthetic_images(3000, REGION)
    with fake.FakePaiApi({REGION: images}) as api:
        [first] = sync(
            matrix_options(api, page_size=100), db_option=catalog_db.target, credentials=CREDS
        )
    assert first.ok, first.error
    old = resolve_answer(catalog_db)
    served = rebuilt(images, json.loads(old)["image_id"])
    stop = tmp_path / "stop"
    logs = [tmp_path / f"reader-{n}.jsonl" for n in range(4)]
    readers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                READER,
                catalog_db.target,
                str(stop),
                str(log),
                "process" if n % 2 else "service",
            ],
            env=subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, log in enumerate(logs)
    ]
    try:
        deadline = time.monotonic() + 30
        while not all(log.exists() and log.stat().st_size for log in logs):
            assert time.monotonic() < deadline, "the readers did not start"
            time.sleep(0.05)
        with fake.FakePaiApi({REGION: served}) as api:
            api.faults.latency = 0.01
            finished = subprocess.run(
                sync_command(catalog_db, api, "--page-size", "100"),
                env=subprocess_env(), capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        assert finished.returncode == 0, finished.stderr
        new = resolve_answer(catalog_db)
        answered_new = f'"stdout": {json.dumps(new)}'
        # Every reader has answered from the new catalog before it is stopped.
        deadline = time.monotonic() + 60
        while not all(answered_new in log.read_text(encoding="utf-8") for log in logs):
            assert time.monotonic() < deadline, "a reader never saw the new catalog"
            time.sleep(0.05)
    finally:
        stop.touch()
        for reader in readers:
            assert reader.wait(timeout=60) == 0, reader.stderr.read() if reader.stderr else ""
    assert new != old and json.loads(new)["labels"]["system.rebuilt"] == "true"
    for log in logs:
        answers = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
        bad = [
            a
            for a in answers
            if (a["exit"], a["stderr"]) != (0, "") or a["stdout"] not in (old, new)
        ]
        assert not bad, f"{log.name}: {len(bad)} of {len(answers)} answers were wrong: {bad[:2]}"
        seen = [a["stdout"] == new for a in answers]
        # Old, then new, and never back: each reader's answers switch exactly once.
        assert seen[0] is False and seen[-1] is True and seen == sorted(seen), log.name
        print(f"\n{log.name}: {seen.count(False)} old, {seen.count(True)} new answers")


def test_a_service_sees_a_catalog_file_replaced_under_it(tmp_path: Path) -> None:
    """Bug 2 in docs/RELIABILITY.md (fixed in 90e4b11): answers remembered by URL and PRAGMA
    data_version, which restarts at 1 on every connection, outlived the file they came from."""
    import catalog

    images = fake.synthetic_images(MATRIX_IMAGES, REGION)
    old_db, new_db, live = tmp_path / "old.db", tmp_path / "new.db", tmp_path / "catalog.db"
    with fake.FakePaiApi({REGION: images}) as api:
        assert sync(matrix_options(api), db_option=str(old_db), credentials=CREDS)[0].ok
    old = catalog.retrieve("pytorch", db=str(old_db))
    with fake.FakePaiApi({REGION: rebuilt(images, old.image_id)}) as api:
        assert sync(matrix_options(api), db_option=str(new_db), credentials=CREDS)[0].ok
    shutil.copyfile(old_db, live)
    assert catalog.retrieve("pytorch", db=str(live)) == old
    # How a new catalog is published: a copy beside the old one, renamed over it.
    shutil.copyfile(new_db, tmp_path / "catalog.db.tmp")
    os.replace(tmp_path / "catalog.db.tmp", live)
    assert catalog.retrieve("pytorch", db=str(live)).labels.get("system.rebuilt") == "true"
