"""Import through the store: runs, versions, events; idempotence; nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from catalog.errors import InputError, UsageError
from catalog.sync.run import import_files
from tests.conftest import api_image
from tests.dbkit import CatalogDb

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


def counts(db: CatalogDb) -> dict[str, int]:
    tables = ["sync_run", "image", "image_version", "image_label", "image_scope", "image_event"]
    return {t: db.scalar(f"SELECT count(*) FROM {t}") for t in tables}


def run(db: CatalogDb, write_listing: Any, images: list[dict[str, Any]]) -> Any:
    return import_files([write_listing(images)], REGION, db_option=db.target)


def test_first_import_adds_everything(catalog_db: CatalogDb, write_listing: Any) -> None:
    stats = run(catalog_db, write_listing, base_images())
    assert (stats.seen, stats.added, stats.changed, stats.removed) == (3, 3, 0, 0)
    assert catalog_db.rows("SELECT kind, count(*) FROM image_event GROUP BY kind") == [("added", 3)]
    assert catalog_db.rows("SELECT status, seen, added FROM sync_run") == [("ok", 3, 3)]
    labels = catalog_db.rows("SELECT value FROM image_label WHERE key = 'custom.unknown'")
    assert labels == [("kept",)]


def test_second_identical_import_writes_nothing(catalog_db: CatalogDb, write_listing: Any) -> None:
    run(catalog_db, write_listing, base_images())
    before = counts(catalog_db)
    stats = run(catalog_db, write_listing, base_images())
    after = counts(catalog_db)
    assert (stats.added, stats.changed, stats.removed, stats.restored) == (0, 0, 0, 0)
    assert after == {**before, "sync_run": before["sync_run"] + 1}


def test_change_removal_and_restore_are_events(catalog_db: CatalogDb, write_listing: Any) -> None:
    run(catalog_db, write_listing, base_images())
    changed = base_images()
    changed[1]["Size"] = 200
    changed[1]["Labels"].append({"Key": "system.chipType", "Value": "CPU"})
    del changed[2]
    stats = run(catalog_db, write_listing, changed)
    assert (stats.changed, stats.removed) == (1, 1)
    events = catalog_db.rows(
        "SELECT e.kind, i.image_id, e.changed_fields FROM image_event e "
        "JOIN image i ON i.id = e.image_pk WHERE e.run_id = 2 ORDER BY e.id",
    )
    assert events == [
        ("changed", "img-tf", json.dumps(["size", "labels"])),
        ("removed", "img-xgb", None),
    ]
    assert catalog_db.rows(
        "SELECT removed_run_id, last_seen_run_id FROM image WHERE image_id = 'img-xgb'"
    ) == [(2, 1)]
    assert catalog_db.rows("SELECT count(*) FROM v_image") == [(2,)]

    stats = run(catalog_db, write_listing, base_images())
    assert (stats.restored, stats.changed) == (1, 1)
    assert catalog_db.rows("SELECT removed_run_id FROM image WHERE image_id = 'img-xgb'") == [
        (None,)
    ]
    versions = catalog_db.rows(
        "SELECT v.valid_from_run_id, v.valid_to_run_id, v.is_latest FROM image_version v "
        "JOIN image i ON i.id = v.image_pk WHERE i.image_id = 'img-xgb' ORDER BY v.id",
    )
    assert versions == [(1, 2, 0), (3, None, 1)]


def test_same_image_id_in_two_regions_is_two_images(
    catalog_db: CatalogDb, write_listing: Any
) -> None:
    run(catalog_db, write_listing, base_images())
    # The same ids in Beijing's listing, on Beijing's registry host.
    elsewhere = [
        {**image, "ImageUri": image["ImageUri"].replace("cn-hangzhou", "cn-beijing")}
        for image in base_images()
    ]
    import_files([write_listing(elsewhere)], "cn-beijing", db_option=catalog_db.target)
    assert catalog_db.rows("SELECT count(*) FROM image") == [(6,)]
    # importing one region never removes another region's images
    assert catalog_db.rows("SELECT count(*) FROM image WHERE removed_run_id IS NOT NULL") == [(0,)]


def test_malformed_file_writes_nothing(
    catalog_db: CatalogDb, write_listing: Any, tmp_path: Path
) -> None:
    run(catalog_db, write_listing, base_images())
    before = counts(catalog_db)
    bad = tmp_path / "bad.json"
    bad.write_text('{"Images": [{"ImageId": "x", "Labels": "oops"}]}')
    with pytest.raises(InputError, match=r"Images\[0\]: Labels must be a list"):
        import_files([bad], REGION, db_option=catalog_db.target)
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"Images": [{"ImageId": ')
    with pytest.raises(InputError, match="is not valid JSON"):
        import_files([truncated], REGION, db_option=catalog_db.target)
    assert counts(catalog_db) == before


def test_incomplete_pages_are_refused(catalog_db: CatalogDb, write_listing: Any) -> None:
    page = write_listing(base_images()[:2], total=3)
    with pytest.raises(InputError) as caught:
        import_files([page], REGION, db_option=catalog_db.target)
    assert str(caught.value) == (
        "The files hold 2 distinct images but TotalCount says 3; "
        "import every page of the listing so that removals are not guessed."
    )
    rest = write_listing(base_images()[2:], total=3)
    stats = import_files([page, rest], REGION, db_option=catalog_db.target)
    assert stats.added == 3


def test_bare_list_and_missing_fields(
    catalog_db: CatalogDb, write_listing: Any, tmp_path: Path
) -> None:
    path = tmp_path / "list.json"
    # Labels is the one field an image must carry (a verbose listing always sends it).
    only = [{"ImageUri": TORCH, "Labels": []}, {"ImageId": "only-id", "Labels": []}]
    path.write_text(json.dumps(only))
    stats = import_files([path], REGION, db_option=catalog_db.target)
    assert stats.added == 2
    rows = catalog_db.rows("SELECT image_id, parse_status FROM image_version ORDER BY image_id")
    assert rows[0] == ("only-id", "unrecognized")
    assert rows[1][0] == f"uri:{TORCH}"


def test_bad_region_is_a_usage_error(catalog_db: CatalogDb, write_listing: Any) -> None:
    with pytest.raises(UsageError, match="is not a region id"):
        import_files([write_listing([])], "Hangzhou!", db_option=catalog_db.target)


def test_import_creates_the_database(empty_db: CatalogDb, write_listing: Any) -> None:
    import_files([write_listing(base_images())], REGION, db_option=empty_db.target)
    assert empty_db.rows("SELECT version_num FROM alembic_version") == [("0010",)]
    assert empty_db.scalar("SELECT count(*) FROM v_image") == 3


def test_corrupt_database_is_refused_untouched(tmp_path: Path, write_listing: Any) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 100)
    before = corrupt.read_bytes()
    from catalog.errors import DatabaseError

    with pytest.raises(DatabaseError, match="is corrupt or not an SQLite database"):
        import_files([write_listing(base_images())], REGION, db_option=str(corrupt))
    assert corrupt.read_bytes() == before


def test_reparse_updates_what_older_rules_read(catalog_db: CatalogDb, write_listing: Any) -> None:
    run(catalog_db, write_listing, base_images())
    # as an older pai-catalog might have read the TensorFlow image
    catalog_db.execute(
        "UPDATE image_version SET framework = 'tf', framework_key = 'tf', scopes = NULL "
        "WHERE image_id = 'img-tf'",
        "DELETE FROM image_scope WHERE version_id = (SELECT id FROM image_version "
        "WHERE image_id = 'img-tf')",
    )
    events_before = catalog_db.rows("SELECT count(*) FROM image_event")
    from catalog.store.reparse import Reparsed, reparse

    updated = reparse(catalog_db.target)
    assert updated == Reparsed(catalog_db.display, changed=1, total=3)
    assert catalog_db.rows(
        "SELECT framework, scopes FROM image_version WHERE image_id = 'img-tf'"
    ) == [("TensorFlow", "training")]
    assert catalog_db.rows("SELECT count(*) FROM image_scope") == [(3,)]
    assert catalog_db.rows("SELECT count(*) FROM image_event") == events_before
    again = reparse(catalog_db.target)
    assert again == Reparsed(catalog_db.display, changed=0, total=3)
