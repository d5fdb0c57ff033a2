"""History built by importing seven listings: runs, diff, image_history and as_of, exactly."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import catalog
from catalog.config import DbTarget
from catalog.errors import AmbiguousError, NotFoundError, SafetyError, UsageError
from catalog.read import history
from catalog.read.history import Change, Run
from catalog.store import writer
from catalog.sync.run import import_files
from tests.conftest import ROOT, api_image
from tests.dbkit import CatalogDb

HZ = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai"
BJ = "dsw-registry.cn-beijing.cr.aliyuncs.com/pai"
DAY = 86_400
T1 = 1_767_225_600  # 2026-01-01T00:00:00Z; run n is imported at T1 + (n - 1) days

URI_A = f"{HZ}/pytorch:2.9.0-gpu-py311-cu121-ubuntu22.04"
URI_B = f"{HZ}/pytorch:2.10.0-gpu-py312-cu124-ubuntu22.04"
URI_K = f"{HZ}/pytorch:2.11.0-gpu-py312-cu124-ubuntu22.04"
URI_C = f"{HZ}/tensorflow-training:2.15.0-gpu-py310-cu121-ubuntu22.04"
URI_D = f"{HZ}/xgboost-training:1.6.0-cpu-py36-ubuntu18.04"
URI_TMP = f"{HZ}/tensorflow-training:2.16.0-gpu-py310-cu121-ubuntu22.04"
URI_BJ_A = f"{BJ}/pytorch:2.9.0-gpu-py311-cu121-ubuntu22.04"
URI_BJ = f"{BJ}/pytorch:2.12.0-gpu-py312-cu126-ubuntu24.04"
NOTE = {"release.note": "rebuilt"}
HINT = "pai-catalog runs lists them."


def fw(name: str, version: str, chip: str, **extra: str) -> dict[str, str]:
    labels = {
        "system.official": "true",
        f"system.framework.{name}": version,
        "system.chipType": chip,
        "system.supported.dlc": "true",
    }
    return {**labels, **extra}


def torch(image_id: str, uri: str, version: str, **extra: str) -> dict[str, Any]:
    return api_image(image_id, uri, fw("PyTorch", version, "GPU", **extra))


def tensorflow(image_id: str, uri: str, version: str, **fields: Any) -> dict[str, Any]:
    return api_image(image_id, uri, fw("TensorFlow", version, "GPU"), **fields)


def fillers(sixth: str = "6") -> list[dict[str, Any]]:
    tags = ["1", "2", "3", "4", "5", sixth]
    return [api_image(f"fill-{n}", f"{HZ}/filler:{tag}") for n, tag in enumerate(tags, 1)]


A1 = torch("pt-290", URI_A, "2.9.0")
A3 = torch("pt-290", URI_A, "2.9.0", **NOTE)  # a label added
B = torch("pt-2100", URI_B, "2.10.0")
K = torch("pt-2110", URI_K, "2.11.0")
C1 = tensorflow("tf-215", URI_C, "2.15.0", Size=100)
C3 = tensorflow("tf-215", URI_C, "2.15.0", Size=200)
C6 = tensorflow("tf-215", URI_C, "2.15.0", Size=200, Description="TensorFlow 2.15")
D = api_image("xgb", URI_D, {"system.official": "true"})
TMP = tensorflow("tf-216", URI_TMP, "2.16.0")
BJ_A = torch("pt-290", URI_BJ_A, "2.9.0")
BJ1 = torch("bj-only", URI_BJ, "2.12.0")
BJ7 = torch("bj-only", URI_BJ, "2.12.0", **NOTE)

LISTINGS: list[tuple[str, list[dict[str, Any]]]] = [
    ("cn-hangzhou", [A1, B, C1, D, *fillers()]),  # 1: ten images
    ("cn-beijing", [BJ_A, BJ1]),  # 2
    ("cn-hangzhou", [A3, B, C3, K, *fillers()]),  # 3: label, size, addition, removal
    ("cn-hangzhou", [A3, B, C3, K]),  # 4: would remove six of ten: refused
    ("cn-hangzhou", [A3, C3, D, K, TMP, *fillers()]),  # 5: restore, removal, addition
    ("cn-hangzhou", [A3, C6, D, K, *fillers("6b")]),  # 6: description, URI, tmp goes
    ("cn-beijing", [BJ_A, BJ7]),  # 7: a label in the other region
]
SAFETY = (
    "cn-hangzhou: this run would remove 6 of 10 live images (60%); nothing was written. "
    "If the removal is real, run again with --allow-mass-removal."
)


def build_history(db: str, write_listing: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    for number, (region, images) in enumerate(LISTINGS, 1):
        monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", str(T1 + (number - 1) * DAY))
        listing = write_listing(images, name=f"run-{number}.json")
        if number == 4:
            with pytest.raises(SafetyError) as refused:
                import_files([listing], region, db_option=db)
            assert str(refused.value) == SAFETY
        else:
            stored = import_files([listing], region, db_option=db).run_id
            assert stored == CatalogDb(db).scalar("SELECT max(id) FROM sync_run")
    return db


@pytest.fixture
def db(
    catalog_db: CatalogDb,
    write_listing: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """The seven runs, on the backend under test: the value to give as db=."""
    return build_history(catalog_db.target, write_listing, monkeypatch)


def test_each_run_takes_the_next_number(db: str) -> None:
    assert [run.run_id for run in history.runs(db=db)] == [7, 6, 5, 4, 3, 2, 1]


def day(n: int) -> str:
    return f"2026-01-0{n}T00:00:00Z"


def ran(n: int, region: str, *counts: int, status: str = "ok", error: str | None = None) -> Run:
    """Run n as these imports record it: pinned times, no pages, the listing's file name."""
    seen, added, changed, removed, restored = counts
    return Run(
        n, region, "import", status, day(n), day(n), 0.0, 0, 0, 0,
        seen, added, changed, removed, restored, error, f"run-{n}.json",
    )  # fmt: skip


def test_runs_newest_first_with_counts(db: str) -> None:
    hz, bj = "cn-hangzhou", "cn-beijing"
    assert history.runs(db=db) == [
        ran(7, bj, 2, 0, 1, 0, 0),
        ran(6, hz, 10, 0, 2, 1, 0),
        ran(5, hz, 11, 1, 0, 1, 1),
        ran(4, hz, 0, 0, 0, 0, 0, status="failed", error=SAFETY),
        ran(3, hz, 10, 1, 2, 1, 0),
        ran(2, bj, 2, 2, 0, 0, 0),
        ran(1, hz, 10, 10, 0, 0, 0),
    ]


def test_runs_filters(db: str) -> None:
    def ids(**kwargs: Any) -> list[int]:
        return [r.run_id for r in history.runs(db=db, **kwargs)]

    assert ids(region=" CN-Beijing ") == [7, 2]
    assert ids(status="failed") == [4]
    assert ids(region="cn-hangzhou", status="OK", limit=2) == [6, 5]
    with pytest.raises(NotFoundError, match=r"^No run of region 'cn-shanghai'\."):
        ids(region="cn-shanghai")  # a region with no run at all: a typo, most likely
    with pytest.raises(UsageError) as caught:
        history.runs(status="broken", db=db)
    assert str(caught.value) == "Unknown run status 'broken'; use one of running, ok, failed."
    with pytest.raises(UsageError) as caught:
        history.runs(limit=0, db=db)
    assert str(caught.value) == "The limit must be a positive number of runs, not 0."


def rows(changes: list[Change]) -> list[tuple[Any, ...]]:
    return [dataclasses.astuple(change) for change in changes]


LABELS_A1 = dict(sorted(fw("PyTorch", "2.9.0", "GPU").items()))
LABELS_A3 = dict(sorted({**LABELS_A1, **NOTE}.items()))
LABELS_BJ1 = dict(sorted(fw("PyTorch", "2.12.0", "GPU").items()))
LABELS_BJ7 = dict(sorted({**LABELS_BJ1, **NOTE}.items()))
FILL_6 = (
    "changed", "cn-hangzhou", "fill-6", f"{HZ}/filler:6b", "filler", "6b",
    ("image_name", "image_uri"),
    {"image_name": "filler:6", "image_uri": f"{HZ}/filler:6"},
    {"image_name": "filler:6b", "image_uri": f"{HZ}/filler:6b"},
)  # fmt: skip
HZ_LAST = [  # run 5 -> run 6
    FILL_6,
    ("changed", "cn-hangzhou", "tf-215", URI_C, "TensorFlow", "2.15.0", ("description",),
     {"description": None}, {"description": "TensorFlow 2.15"}),
    ("removed", "cn-hangzhou", "tf-216", URI_TMP, "TensorFlow", "2.16.0", (), None, None),
]  # fmt: skip


def test_default_diff_is_each_regions_last_two_successful_runs(db: str) -> None:
    assert rows(history.diff(db=db)) == [
        ("changed", "cn-beijing", "bj-only", URI_BJ, "PyTorch", "2.12.0", ("labels",),
         {"labels": LABELS_BJ1}, {"labels": LABELS_BJ7}),
        *HZ_LAST,
    ]  # fmt: skip
    assert rows(history.diff(region="CN-HANGZHOU", db=db)) == HZ_LAST
    # Only run A: up to the latest successful run of its region.
    assert rows(history.diff(5, db=db)) == HZ_LAST


def test_diff_of_an_explicit_pair(db: str) -> None:
    assert rows(history.diff(1, 3, db=db)) == [
        ("added", "cn-hangzhou", "pt-2110", URI_K, "PyTorch", "2.11.0", (), None, None),
        ("changed", "cn-hangzhou", "pt-290", URI_A, "PyTorch", "2.9.0", ("labels",),
         {"labels": LABELS_A1}, {"labels": LABELS_A3}),
        ("changed", "cn-hangzhou", "tf-215", URI_C, "TensorFlow", "2.15.0", ("size",),
         {"size": 100}, {"size": 200}),
        ("removed", "cn-hangzhou", "xgb", URI_D, "XGBoost", "1.6.0", (), None, None),
    ]  # fmt: skip
    # Net state over a span: xgb went and came back unchanged, tf-216 came and went.
    assert rows(history.diff(1, 6, region="cn-hangzhou", db=db)) == [
        ("added", "cn-hangzhou", "pt-2110", URI_K, "PyTorch", "2.11.0", (), None, None),
        FILL_6,
        ("changed", "cn-hangzhou", "pt-290", URI_A, "PyTorch", "2.9.0", ("labels",),
         {"labels": LABELS_A1}, {"labels": LABELS_A3}),
        ("changed", "cn-hangzhou", "tf-215", URI_C, "TensorFlow", "2.15.0", ("description", "size"),
         {"description": None, "size": 100}, {"description": "TensorFlow 2.15", "size": 200}),
        ("removed", "cn-hangzhou", "pt-2100", URI_B, "PyTorch", "2.10.0", (), None, None),
    ]  # fmt: skip
    # Only run B: from the successful run before it (3; run 4 failed).
    assert rows(history.diff(run_b=5, db=db)) == [
        ("added", "cn-hangzhou", "tf-216", URI_TMP, "TensorFlow", "2.16.0", (), None, None),
        ("added", "cn-hangzhou", "xgb", URI_D, "XGBoost", "1.6.0", (), None, None),
        ("removed", "cn-hangzhou", "pt-2100", URI_B, "PyTorch", "2.10.0", (), None, None),
    ]
    assert history.diff(2, 7, db=db) == history.diff(region="cn-beijing", db=db)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        pytest.param((4, 6), {}, UsageError, "Run 4 failed (cn-hangzhou: this run would remove 6 "
                     f"of 10 live images (60%)); diff compares successful runs: {HINT}"),
        pytest.param((3,), {"run_b": 4}, UsageError, "Run 4 failed (cn-hangzhou: this run would "
                     f"remove 6 of 10 live images (60%)); diff compares successful runs: {HINT}"),
        ((2, 3), {}, UsageError, "Run 2 is of cn-beijing and run 3 of cn-hangzhou; diff compares "
         f"two runs of one region: {HINT}"),
        ((1, 99), {}, NotFoundError, f"There is no run 99; {HINT}"),
        ((3, 1), {}, UsageError, "Run 3 is not earlier than run 1; give the earlier run first."),
        ((3, 3), {}, UsageError, "Run 3 is not earlier than run 3; give the earlier run first."),
        ((1, 3), {"region": "cn-beijing"}, UsageError,
         "Runs 1 and 3 are of cn-hangzhou, not cn-beijing."),
        ((), {"run_b": 1}, NotFoundError, "Run 1 is the first successful run of cn-hangzhou; "
         f"there is nothing earlier to compare it with: {HINT}"),
        pytest.param((6,), {}, NotFoundError, "Run 6 is the latest successful run of cn-hangzhou; "
                     f"give a later run to compare it with: {HINT}"),
        ((), {"region": "cn-shanghai"}, NotFoundError,
         "No run of region 'cn-shanghai'. Did you mean 'cn-hangzhou'? Regions with runs: "
         "cn-beijing, cn-hangzhou."),
    ],
)  # fmt: skip
def test_diff_errors(
    db: str, args: tuple[int, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        history.diff(*args, db=db, **kwargs)
    assert str(caught.value) == message


def test_a_region_with_one_successful_run_is_skipped(
    catalog_db: CatalogDb, write_listing: Any
) -> None:
    db = catalog_db.target
    import_files([write_listing([A1, B])], "cn-hangzhou", db_option=db)
    import_files([write_listing([BJ_A])], "cn-beijing", db_option=db)
    import_files([write_listing([A1])], "cn-hangzhou", db_option=db)
    assert rows(history.diff(db=db)) == [
        ("removed", "cn-hangzhou", "pt-2100", URI_B, "PyTorch", "2.10.0", (), None, None)
    ]
    with pytest.raises(NotFoundError) as caught:
        history.diff(region="cn-beijing", db=db)
    assert str(caught.value) == f"cn-beijing has only one successful run; diff needs two: {HINT}"


def events(uri_or_id: str, db: str, region: str | None = None) -> list[tuple[Any, ...]]:
    """Every event without its id and digest: (kind, run_id, region, at, image_id, uri, ...)."""
    found = history.image_history(uri_or_id, region=region, db=db)
    return [dataclasses.astuple(event)[1:-1] for event in found]  # no id, no digest


def test_image_history(db: str) -> None:
    hz = "cn-hangzhou"
    assert events("xgb", db) == [
        ("added", 1, hz, day(1), "xgb", URI_D, "XGBoost", "1.6.0", ()),
        ("removed", 3, hz, day(3), "xgb", URI_D, "XGBoost", "1.6.0", ()),
        ("restored", 5, hz, day(5), "xgb", URI_D, "XGBoost", "1.6.0", ()),
    ]
    assert events(URI_C, db) == [
        ("added", 1, hz, day(1), "tf-215", URI_C, "TensorFlow", "2.15.0", ()),
        ("changed", 3, hz, day(3), "tf-215", URI_C, "TensorFlow", "2.15.0", ("size",)),
        ("changed", 6, hz, day(6), "tf-215", URI_C, "TensorFlow", "2.15.0", ("description",)),
    ]
    # Found by a URI it no longer has; each event shows the URI of its own state.
    assert events(f"{HZ}/filler:6", db) == [
        ("added", 1, hz, day(1), "fill-6", f"{HZ}/filler:6", "filler", "6", ()),
        (
            "changed",
            6,
            hz,
            day(6),
            "fill-6",
            f"{HZ}/filler:6b",
            "filler",
            "6b",
            ("image_name", "image_uri"),
        ),
    ]
    assert events(f" {URI_TMP} ", db) == [
        ("added", 5, hz, day(5), "tf-216", URI_TMP, "TensorFlow", "2.16.0", ()),
        ("removed", 6, hz, day(6), "tf-216", URI_TMP, "TensorFlow", "2.16.0", ()),
    ]
    assert events("pt-290", db, region="CN-Beijing") == [
        ("added", 2, "cn-beijing", day(2), "pt-290", URI_BJ_A, "PyTorch", "2.9.0", ()),
    ]
    assert [e.event_id for e in history.image_history("bj-only", db=db)] == [12, 23]


@pytest.mark.parametrize(
    ("needle", "region", "error", "message"),
    [
        ("pt-290", None, AmbiguousError,
         "'pt-290' is in 2 regions (cn-beijing, cn-hangzhou); choose one with region= (--region)."),
        ("bj-only", "cn-hangzhou", NotFoundError,
         "'bj-only' has no history in cn-hangzhou; it is in cn-beijing."),
        ("nope", None, NotFoundError, "No image with URI or ImageId 'nope' in the catalog's "
         "history; pai-catalog list --include-removed shows the known images."),
        ("  ", None, UsageError,
         "Give an image URI or ImageId, such as one pai-catalog list shows."),
    ],
)  # fmt: skip
def test_image_history_errors(
    db: str, needle: str, region: str | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        history.image_history(needle, region=region, db=db)
    assert str(caught.value) == message


def gpu_torch(db: str, as_of: str | None = None) -> list[str]:
    found = catalog.list_images(
        "pytorch", region="cn-hangzhou", accelerator_type="GPU", as_of=as_of, db=db
    )
    return [image.image_id for image in found]


def test_as_of_answers_as_the_catalog_stood(db: str) -> None:
    with pytest.raises(NotFoundError, match=r"^The catalog's history starts at 2026-01-01T"):
        gpu_torch(db, "2025-12-31")  # before the first run: said, not an empty list
    assert gpu_torch(db, "2026-01-01T12:00:00Z") == ["pt-2100", "pt-290"]
    # A run's changes count from the moment it started.
    assert gpu_torch(db, "2026-01-03") == ["pt-2110", "pt-2100", "pt-290"]
    assert gpu_torch(db, "2026-01-04T12:00:00Z") == ["pt-2110", "pt-2100", "pt-290"]  # failed
    assert gpu_torch(db, "2026-01-05T07:59:59+08:00") == ["pt-2110", "pt-2100", "pt-290"]
    assert gpu_torch(db, "2026-01-05T08:00:00+08:00") == ["pt-2110", "pt-290"]
    assert gpu_torch(db, "2026-01-05T12:00:00Z") == ["pt-2110", "pt-290"]
    assert gpu_torch(db) == ["pt-2110", "pt-290"]

    def listed(framework: str, as_of: str) -> list[str]:
        found = catalog.list_images(framework, region="cn-hangzhou", as_of=as_of, db=db)
        return [image.image_id for image in found]

    assert [listed("xgboost", f"2026-01-0{n}T12:00:00") for n in range(1, 8)] == [
        ["xgb"], ["xgb"], [], [], ["xgb"], ["xgb"], ["xgb"]
    ]  # fmt: skip
    assert [listed("tensorflow", f"2026-01-0{n}T12:00:00") for n in (4, 5, 6)] == [
        ["tf-215"], ["tf-216", "tf-215"], ["tf-215"]
    ]  # fmt: skip

    def best(version: str, as_of: str | None) -> tuple[str, dict[str, str | None]]:
        info = catalog.retrieve("pytorch", version, "GPU", region="cn-hangzhou", as_of=as_of, db=db)
        return info.image_id, dict(info.labels)

    assert best("latest", "2026-01-02") == ("pt-2100", fw("PyTorch", "2.10.0", "GPU"))
    assert best("2.9", "2026-01-02") == ("pt-290", LABELS_A1)
    assert best("2.9", "2026-01-03") == ("pt-290", LABELS_A3)
    assert best("2.10", "2026-01-04T23:59:59Z") == ("pt-2100", fw("PyTorch", "2.10.0", "GPU"))
    with pytest.raises(NotFoundError):
        best("2.10", None)


def test_server_path_reads_the_same(
    sqlite_path: Path, write_listing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through SQLAlchemy (as for a server URL) times come back as datetimes, not text."""
    db = build_history(str(sqlite_path), write_listing, monkeypatch)
    by_file = (history.runs(db=db), history.diff(1, 6, db=db), history.image_history("xgb", db=db))
    target = DbTarget(url=f"sqlite:///{db}", path=None)
    monkeypatch.setattr(history, "resolve_target", lambda option, **_: target)
    by_engine = (history.runs(), history.diff(1, 6), history.image_history("xgb"))
    assert by_engine == by_file


def test_compared_fields_match_the_store() -> None:
    assert history.COMPARED_FIELDS == writer.COMPARED_FIELDS


def test_reading_history_does_not_import_sqlalchemy() -> None:
    code = (
        "import sys, catalog.read.history; "
        "print(sorted(m for m in sys.modules if 'sqlalchemy' in m))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.stdout.strip() == "[]", result.stderr
