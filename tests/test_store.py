"""Import through the store: runs, versions, events; idempotence; nothing half-written."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from catalog.errors import InputError, UsageError
from catalog.sync import import_files
from tests.conftest import api_image

REGION = "cn-hangzhou"
TORCH = (
    "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/pytorch-training:2.1-gpu-py310-cu121-ubuntu22.04"
)
TF = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/tensorflow-training:2.3-cpu-py36-ubuntu18.04"
XGB = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/xgboost-training:1.6.0-cpu-py36-ubuntu18.04"


def base_images() -> list[dict[str, Any]]:
    return [
        api_image("img-torch", TORCH, {"system.official": "true", "system.supported.dlc": "true"}),
        api_image("img-tf", TF, {"system.official": "true"}, Size=100),
        api_image("img-xgb", XGB, {"system.official": "true", "custom.unknown": "kept"}),
    ]


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def counts(path: Path) -> dict[str, int]:
    tables = ["sync_run", "image", "image_version", "image_label", "image_scope", "image_event"]
    return {t: query(path, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def run(path: Path, write_listing: Any, images: list[dict[str, Any]]) -> Any:
    return import_files([write_listing(images)], REGION, db_option=str(path))


def test_first_import_adds_everything(db_path: Path, write_listing: Any) -> None:
    stats = run(db_path, write_listing, base_images())
    assert (stats.seen, stats.added, stats.changed, stats.removed) == (3, 3, 0, 0)
    assert query(db_path, "SELECT kind, count(*) FROM image_event GROUP BY kind") == [("added", 3)]
    assert query(db_path, "SELECT status, seen, added FROM sync_run") == [("ok", 3, 3)]
    labels = query(db_path, "SELECT value FROM image_label WHERE key = 'custom.unknown'")
    assert labels == [("kept",)]


def test_second_identical_import_writes_nothing(db_path: Path, write_listing: Any) -> None:
    run(db_path, write_listing, base_images())
    before = counts(db_path)
    stats = run(db_path, write_listing, base_images())
    after = counts(db_path)
    assert (stats.added, stats.changed, stats.removed, stats.restored) == (0, 0, 0, 0)
    assert after == {**before, "sync_run": before["sync_run"] + 1}


def test_change_removal_and_restore_are_events(db_path: Path, write_listing: Any) -> None:
    run(db_path, write_listing, base_images())
    changed = base_images()
    changed[1]["Size"] = 200
    changed[1]["Labels"].append({"Key": "system.chipType", "Value": "CPU"})
    del changed[2]
    stats = run(db_path, write_listing, changed)
    assert (stats.changed, stats.removed) == (1, 1)
    events = query(
        db_path,
        "SELECT e.kind, i.image_id, e.changed_fields FROM image_event e "
        "JOIN image i ON i.id = e.image_pk WHERE e.run_id = 2 ORDER BY e.id",
    )
    assert events == [
        ("changed", "img-tf", json.dumps(["size", "labels"])),
        ("removed", "img-xgb", None),
    ]
    assert query(
        db_path, "SELECT removed_run_id, last_seen_run_id FROM image WHERE image_id = 'img-xgb'"
    ) == [(2, 1)]
    assert query(db_path, "SELECT count(*) FROM v_image") == [(2,)]

    stats = run(db_path, write_listing, base_images())
    assert (stats.restored, stats.changed) == (1, 1)
    assert query(db_path, "SELECT removed_run_id FROM image WHERE image_id = 'img-xgb'") == [
        (None,)
    ]
    versions = query(
        db_path,
        "SELECT v.valid_from_run_id, v.valid_to_run_id, v.is_latest FROM image_version v "
        "JOIN image i ON i.id = v.image_pk WHERE i.image_id = 'img-xgb' ORDER BY v.id",
    )
    assert versions == [(1, 2, 0), (3, None, 1)]


def test_same_image_id_in_two_regions_is_two_images(db_path: Path, write_listing: Any) -> None:
    run(db_path, write_listing, base_images())
    import_files([write_listing(base_images())], "cn-beijing", db_option=str(db_path))
    assert query(db_path, "SELECT count(*) FROM image") == [(6,)]
    # importing one region never removes another region's images
    assert query(db_path, "SELECT count(*) FROM image WHERE removed_run_id IS NOT NULL") == [(0,)]


def test_malformed_file_writes_nothing(db_path: Path, write_listing: Any, tmp_path: Path) -> None:
    run(db_path, write_listing, base_images())
    before = counts(db_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"Images": [{"ImageId": "x", "Labels": "oops"}]}')
    with pytest.raises(InputError, match=r"Images\[0\]: Labels must be a list"):
        import_files([bad], REGION, db_option=str(db_path))
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"Images": [{"ImageId": ')
    with pytest.raises(InputError, match="is not valid JSON"):
        import_files([truncated], REGION, db_option=str(db_path))
    assert counts(db_path) == before


def test_incomplete_pages_are_refused(db_path: Path, write_listing: Any) -> None:
    page = write_listing(base_images()[:2], total=3)
    with pytest.raises(InputError) as caught:
        import_files([page], REGION, db_option=str(db_path))
    assert str(caught.value) == (
        "The files hold 2 distinct images but TotalCount says 3; "
        "import every page of the listing so that removals are not guessed."
    )
    rest = write_listing(base_images()[2:], total=3)
    stats = import_files([page, rest], REGION, db_option=str(db_path))
    assert stats.added == 3


def test_bare_list_and_missing_fields(db_path: Path, write_listing: Any, tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"ImageUri": TORCH}, {"ImageId": "only-id"}]))
    stats = import_files([path], REGION, db_option=str(db_path))
    assert stats.added == 2
    rows = query(db_path, "SELECT image_id, parse_status FROM image_version ORDER BY image_id")
    assert rows[0] == ("only-id", "unrecognized")
    assert rows[1][0] == f"uri:{TORCH}"


def test_bad_region_is_a_usage_error(db_path: Path, write_listing: Any) -> None:
    with pytest.raises(UsageError, match="is not a region id"):
        import_files([write_listing([])], "Hangzhou!", db_option=str(db_path))


def test_import_creates_the_database(tmp_path: Path, write_listing: Any) -> None:
    target = tmp_path / "new" / "catalog.db"
    import_files([write_listing(base_images())], REGION, db_option=str(target))
    assert query(target, "SELECT version_num FROM alembic_version") == [("0006",)]


def test_corrupt_database_is_refused_untouched(tmp_path: Path, write_listing: Any) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 100)
    before = corrupt.read_bytes()
    from catalog.errors import DatabaseError

    with pytest.raises(DatabaseError, match="is not an SQLite database"):
        import_files([write_listing(base_images())], REGION, db_option=str(corrupt))
    assert corrupt.read_bytes() == before


def test_reparse_updates_what_older_rules_read(db_path: Path, write_listing: Any) -> None:
    run(db_path, write_listing, base_images())
    conn = sqlite3.connect(db_path)
    # as an older pai-catalog might have read the TensorFlow image
    conn.execute(
        "UPDATE image_version SET framework = 'tf', framework_key = 'tf', scopes = NULL "
        "WHERE image_id = 'img-tf'"
    )
    conn.execute("DELETE FROM image_scope WHERE version_id = (SELECT id FROM image_version "
                 "WHERE image_id = 'img-tf')")  # fmt: skip
    conn.commit()
    conn.close()
    events_before = query(db_path, "SELECT count(*) FROM image_event")
    from catalog.sync import reparse

    assert reparse(str(db_path)) == f"{db_path}: 1 of 3 image versions read differently and updated"
    assert query(
        db_path, "SELECT framework, scopes FROM image_version WHERE image_id = 'img-tf'"
    ) == [("TensorFlow", "training")]
    assert query(db_path, "SELECT count(*) FROM image_scope") == [(3,)]
    assert query(db_path, "SELECT count(*) FROM image_event") == events_before
    assert reparse(str(db_path)) == f"{db_path}: 0 of 3 image versions read differently and updated"
