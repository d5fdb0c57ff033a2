"""Resolve as DESIGN.md specifies, on an API-shaped listing written here for the purpose."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import catalog
from catalog.errors import AmbiguousError, NotFoundError, UnsupportedError, UsageError
from catalog.sync.run import import_files
from tests.conftest import api_image
from tests.dbkit import CatalogDb

HZ = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai"
BJ = "dsw-registry.cn-beijing.cr.aliyuncs.com/pai"
AGE = r"\(catalog last updated \d{4}-\d\d-\d\d, \d+ days? ago\)"


def fw(name: str, version: str, chip: str, *scopes: str, **extra: str) -> dict[str, str]:
    keys = {
        "training": "system.supported.dlc",
        "inference": "system.supported.eas",
        "develop": "system.supported.dsw",
    }
    labels = {
        "system.official": "true",
        f"system.framework.{name}": version,
        "system.chipType": chip,
    }
    labels.update({keys[s]: "true" for s in scopes})
    labels.update(extra)
    return labels


def hangzhou() -> list[dict[str, Any]]:
    t0 = "2025-01-0{}T00:00:00Z"
    return [
        api_image(
            "pt-290",
            f"{HZ}/pytorch:2.9.0-gpu-py311-cu121-ubuntu22.04",
            fw("PyTorch", "2.9.0", "GPU", "training"),
        ),
        api_image(
            "pt-2100",
            f"{HZ}/pytorch:2.10.0-gpu-py312-cu124-ubuntu22.04",
            fw(
                "PyTorch",
                "2.10.0",
                "GPU",
                "training",
                "develop",
                **{"system.pythonVersion": "3.12"},
            ),
        ),
        api_image(
            "pt-2100-cpu",
            f"{HZ}/pytorch:2.10.0-cpu-py312-ubuntu22.04",
            fw("PyTorch", "2.10.0", "CPU", "training"),
        ),
        api_image(
            "pt-211rc",
            f"{HZ}/pytorch:2.11.0rc1-gpu-py312-cu124-ubuntu22.04",
            fw("PyTorch", "2.11.0rc1", "GPU", "training"),
        ),
        api_image(
            "pt-21",
            f"{HZ}/pytorch-inference:2.1-gpu-py310-cu121-ubuntu22.04",
            fw("PyTorch", "2.1", "GPU", "inference"),
            GmtCreateTime=t0.format(1),
        ),
        api_image(
            "pt-212",
            f"{HZ}/pytorch-inference:2.1.2-gpu-py310-cu121-ubuntu22.04",
            fw("PyTorch", "2.1.2", "GPU", "inference"),
        ),
        api_image(
            "pt-210-accl",
            f"{HZ}/pytorch-inference:2.1.0-accl-gpu-py310-cu121-ubuntu22.04",
            fw("PyTorch", "2.1.0-accl", "GPU", "inference"),
            GmtCreateTime=t0.format(5),
        ),
        api_image(
            "pt-nightly", f"{HZ}/pytorch:nightly-gpu", fw("PyTorch", "nightly", "GPU", "training")
        ),
        api_image(
            "tf-115",
            f"{HZ}/tensorflow-training:1.15-cpu-py36-ubuntu18.04",
            {"system.official": "true"},
            GmtCreateTime=t0.format(1),
        ),
        api_image(
            "tf-115-deeprec",
            f"{HZ}/tensorflow-training:1.15-deeprec2206-cpu-py36-ubuntu18.04",
            {"system.official": "true"},
            GmtCreateTime=t0.format(3),
        ),
        api_image(
            "tf-23",
            f"{HZ}/tensorflow-training:2.3-cpu-py36-ubuntu18.04",
            {"system.official": "true"},
        ),
        api_image(
            "xgb",
            f"{HZ}/xgboost-training:1.5.0-cpu-py36-ubuntu18.04",
            {
                "system.official": "true",
                "system.framework": "XGBoost 1.6.0",
                "system.chipType": "CPU",
            },
        ),
        api_image(
            "ms-rc",
            f"{HZ}/modelscope:1.10.0rc1-gpu-py310-cu121-ubuntu22.04",
            fw("ModelScope", "1.10.0rc1", "GPU", "develop"),
        ),
        api_image(
            "ds-hz",
            f"{HZ}/deepspeed:0.14.0-gpu-py310-cu121-ubuntu22.04",
            fw("DeepSpeed", "0.14.0", "GPU", "training"),
        ),
    ]


def beijing() -> list[dict[str, Any]]:
    return [
        api_image(
            "pt-2120",
            f"{BJ}/pytorch:2.12.0-gpu-py312-cu126-ubuntu24.04",
            fw("PyTorch", "2.12.0", "GPU", "training"),
        ),
        api_image(
            "ds-bj",
            f"{BJ}/deepspeed:0.14.0-gpu-py310-cu121-ubuntu22.04",
            fw("DeepSpeed", "0.14.0", "GPU", "training"),
        ),
    ]


def fill(db: str, write_listing: Any) -> str:
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=db)
    import_files([write_listing(beijing())], "cn-beijing", db_option=db)
    return db


@pytest.fixture
def db(catalog_db: CatalogDb, write_listing: Any) -> str:
    """Both regions' listings, on the backend under test: the value to give as db=."""
    return fill(catalog_db.target, write_listing)


def image_id(db: str, *args: Any, **kwargs: Any) -> str:
    return catalog.retrieve(*args, db=db, **kwargs).image_id


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        # latest: the highest release; a region is needed when candidates lie in several
        (("pytorch", "latest", "GPU"), {"region": "cn-beijing"}, "pt-2120"),
        (("PyTorch", "latest", "gpu", "training"), {"region": "cn-hangzhou"}, "pt-2100"),
        (("pytorch", "latest", "CPU"), {}, "pt-2100-cpu"),
        # exact, semantically: 2.1.0 asked equals 2.1 stored and the -accl build; newest wins
        (("pytorch", "2.1.0", "GPU", "inference"), {}, "pt-210-accl"),
        (("pytorch", "2.10.0", "GPU", "develop"), {}, "pt-2100"),
        # prefix: highest 2.1.x
        (("pytorch", "2.1", "GPU", "inference"), {}, "pt-212"),
        (("pytorch", "2.9", "GPU"), {}, "pt-290"),
        (("pytorch", "2", "GPU", "training"), {"region": "cn-hangzhou"}, "pt-2100"),
        # ranges
        (("pytorch", ">=2.0,<2.2", "GPU", "inference"), {}, "pt-212"),
        (("pytorch", "<2.10", "GPU", "training"), {"region": "cn-hangzhou"}, "pt-290"),
        (("pytorch", "^2.9", "GPU", "training"), {"region": "cn-hangzhou"}, "pt-2100"),
        (("pytorch", "~=2.1.0", "GPU", "inference"), {}, "pt-212"),
        # prerelease only on request, or when nothing else exists
        (("pytorch", "2.11.0rc1", "GPU"), {}, "pt-211rc"),
        (("modelscope", "latest", "GPU", "develop"), {}, "ms-rc"),
        # build variants tie with their release; the newest image wins
        (("tensorflow", "1.15", "CPU"), {}, "tf-115-deeprec"),
        (("tensorflow", "latest", "cpu", "TRAINING"), {}, "tf-23"),
        # a system.framework label beats the tag
        (("xgboost", "1.6.0"), {}, "xgb"),
        # extra filters
        (
            ("pytorch", "latest", "GPU"),
            {"python_version": "py311", "region": "cn-hangzhou"},
            "pt-290",
        ),
        (
            ("pytorch", "latest", "GPU"),
            {"cuda_version": "cu124", "region": "cn-hangzhou"},
            "pt-2100",
        ),
        (("pytorch", "latest", "GPU"), {"os": "ubuntu24"}, "pt-2120"),
    ],
)
def test_resolve(db: str, args: tuple[str, ...], kwargs: dict[str, Any], expected: str) -> None:
    assert image_id(db, *args, **kwargs) == expected


def test_image_info_has_the_sdk_fields(db: str) -> None:
    info = catalog.retrieve("PYTORCH", "2.10", "GPU", "develop", db=db)
    assert info.image_uri == f"{HZ}/pytorch:2.10.0-gpu-py312-cu124-ubuntu22.04"
    assert info.image_name == "pytorch:2.10.0-gpu-py312-cu124-ubuntu22.04"
    assert (info.framework_name, info.framework_version) == ("PyTorch", "2.10.0")
    assert (info.image_scope, info.accelerator_type, info.python_version) == (
        "develop",
        "GPU",
        "3.12",
    )
    assert (info.region, info.cuda_version, info.os_version) == (
        "cn-hangzhou",
        "12.4",
        "ubuntu22.04",
    )
    assert info.scopes == ("develop", "training")
    assert info.labels["system.supported.dsw"] == "true"


def test_unparseable_version_never_latest_but_listed_last(db: str) -> None:
    assert catalog.list_versions(
        "pytorch", accelerator_type="GPU", image_scope="training", region="cn-hangzhou", db=db
    ) == [
        "2.11.0rc1",
        "2.10.0",
        "2.9.0",
        "nightly",
    ]


def test_unknown_framework_suggests_the_closest(db: str) -> None:
    with pytest.raises(UnsupportedError) as caught:
        catalog.retrieve("pytorh", db=db)
    message = str(caught.value)
    assert message.startswith(
        "Unknown framework 'pytorh'. Did you mean 'PyTorch'? Known frameworks: "
        "DeepSpeed, ModelScope, PyTorch, TensorFlow, XGBoost "
    )
    assert re.search(AGE + r"\.$", message)


def test_missing_version_lists_versions_in_semantic_order(db: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        catalog.retrieve("tensorflow", "0.01", db=db)
    assert re.fullmatch(
        r"No tensorflow version matches '0\.01' for accelerator CPU, scope training; "
        r"available versions: 2\.3, 1\.15 " + AGE + r"\.",
        str(caught.value),
    )


def test_no_image_for_that_accelerator(db: str) -> None:
    with pytest.raises(
        NotFoundError,
        match=r"^No xgboost image for accelerator GPU, scope training; it has images for CPU "
        r"\(accelerator_type=\) ",
    ):
        catalog.retrieve("xgboost", accelerator_type="GPU", db=db)


def test_several_regions_ask_for_one(db: str) -> None:
    with pytest.raises(AmbiguousError) as caught:
        catalog.retrieve("deepspeed", accelerator_type="GPU", db=db)
    assert re.fullmatch(
        r"deepspeed images matching 'latest' for accelerator GPU, scope training are in 2 "
        r"regions \(cn-beijing, cn-hangzhou\); choose one with region=, or set "
        r"PAI_CATALOG_REGION \(or ALIBABA_CLOUD_REGION_ID, or region_id in your aliyun CLI "
        r"profile\) " + AGE + r"\.",
        str(caught.value),
    )
    assert image_id(db, "deepspeed", accelerator_type="GPU", region="CN-Beijing") == "ds-bj"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"framework_version": "2.x.y"}, "'2.x.y' is not a version; ask for latest"),
        ({"framework_version": ">=two"}, "'>=two' is not a valid version range"),
        (
            {"image_scope": "serving"},
            "Unknown scope 'serving'; use one of training, inference, develop, or any.",
        ),
        ({"python_version": "snake"}, "'snake' is not a Python version"),
        ({"cuda_version": "twelve"}, "'twelve' is not a CUDA version"),
        ({"as_of": "yesterday"}, "'yesterday' is not an ISO 8601 date or time"),
    ],
)
def test_bad_arguments(db: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        catalog.retrieve("pytorch", db=db, **kwargs)
    assert str(caught.value).startswith(message)


def test_removed_images_only_when_asked(db: str, write_listing: Any) -> None:
    remaining = [img for img in hangzhou() if img["ImageId"] != "pt-2100"]
    import_files([write_listing(remaining)], "cn-hangzhou", db_option=db)
    assert image_id(db, "pytorch", "latest", "GPU", region="cn-hangzhou") == "pt-290"
    listed = catalog.list_images(
        "pytorch", region="cn-hangzhou", accelerator_type="GPU", image_scope="training", db=db
    )
    assert "pt-2100" not in [i.image_id for i in listed]
    with_removed = catalog.list_images(
        "pytorch",
        region="cn-hangzhou",
        accelerator_type="GPU",
        image_scope="training",
        include_removed=True,
        db=db,
    )
    removed = [i for i in with_removed if i.image_id == "pt-2100"]
    assert len(removed) == 1 and removed[0].removed
    assert catalog.show("pt-2100", db=db).removed


def test_list_filters_and_order(db: str) -> None:
    listed = catalog.list_images("pytorch", accelerator_type="gpu", image_scope="inference", db=db)
    assert [i.image_id for i in listed] == ["pt-212", "pt-210-accl", "pt-21"]
    everything = catalog.list_images(image_scope=None, db=db)
    assert len(everything) == len(hangzhou()) + len(beijing())


def test_show_by_uri_and_ambiguous_show(db: str) -> None:
    info = catalog.show(f"{BJ}/pytorch:2.12.0-gpu-py312-cu126-ubuntu24.04", db=db)
    assert info.image_id == "pt-2120"
    with pytest.raises(NotFoundError, match="No image with URI or ImageId 'nope'"):
        catalog.show("nope", db=db)


def test_as_of_answers_as_the_catalog_stood(
    catalog_db: CatalogDb, write_listing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = catalog_db.target
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", "1767225600")  # 2026-01-01
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=db)
    later = [img for img in hangzhou() if img["ImageId"] != "pt-2100"]
    later.append(
        api_image("pt-2130", f"{HZ}/pytorch:2.13.0-gpu-py312-cu126-ubuntu24.04",
                  fw("PyTorch", "2.13.0", "GPU", "training"))
    )  # fmt: skip
    monkeypatch.setenv("PAI_CATALOG_BUILD_TIME", "1769904000")  # 2026-02-01
    import_files([write_listing(later)], "cn-hangzhou", db_option=db)
    assert image_id(db, "pytorch", accelerator_type="GPU") == "pt-2130"
    assert image_id(db, "pytorch", accelerator_type="GPU", as_of="2026-01-15") == "pt-2100"
    assert image_id(db, "pytorch", "2.10", "GPU", as_of="2026-01-15T12:00:00+08:00") == "pt-2100"
    with pytest.raises(NotFoundError):
        catalog.retrieve("pytorch", "2.10", "GPU", db=db)
    with pytest.raises(NotFoundError, match=r"history starts at .* is before it"):
        catalog.retrieve("pytorch", accelerator_type="GPU", as_of="2025-12-31", db=db)


def test_remembered_answers_follow_every_commit(
    db: str, catalog_db: CatalogDb, write_listing: Any
) -> None:
    first = catalog.retrieve("pytorch", "latest", "GPU", region="cn-hangzhou", db=db)
    again = catalog.retrieve("pytorch", "latest", "GPU", region="cn-hangzhou", db=db)
    # SQLite tells when another connection commits, so answers are kept until then; a server
    # does not, so each call asks it again.
    assert again is first if catalog_db.backend == "sqlite" else again == first
    newer = [
        *hangzhou(),
        api_image("pt-2140", f"{HZ}/pytorch:2.14.0-gpu-py312-cu126-ubuntu24.04",
                  fw("PyTorch", "2.14.0", "GPU", "training")),
    ]  # fmt: skip
    import_files([write_listing(newer)], "cn-hangzhou", db_option=db)
    assert image_id(db, "pytorch", "latest", "GPU", region="cn-hangzhou") == "pt-2140"


def test_a_replaced_file_is_read_afresh(
    sqlite_path: Path, tmp_path: Path, write_listing: Any
) -> None:
    db = fill(str(sqlite_path), write_listing)
    assert image_id(db, "xgboost", region="cn-hangzhou") == "xgb"
    other = tmp_path / "other.db"
    only_tf = [img for img in hangzhou() if img["ImageId"].startswith("tf-")]
    import_files([write_listing(only_tf)], "cn-hangzhou", db_option=str(other))
    # as a published copy comes: a rollback journal, so no -wal of the old file applies to it
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    other.replace(sqlite_path)
    with pytest.raises(UnsupportedError, match="Unknown framework 'xgboost'"):
        catalog.retrieve("xgboost", region="cn-hangzhou", db=db)


def test_labels_cannot_be_changed(db: str) -> None:
    info = catalog.retrieve("xgboost", db=db)
    with pytest.raises(TypeError, match="cannot be changed"):
        info.labels["system.chipType"] = "GPU"  # type: ignore[index]
    assert dataclasses.asdict(info)["labels"]["system.chipType"] == "CPU"
