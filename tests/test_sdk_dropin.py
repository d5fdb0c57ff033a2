"""Code written against the PAI SDK's pai.image runs against catalog, and a request binds one
region as the SDK and the aliyun CLI do (issue 14)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import catalog
from catalog import ImageScope, list_images, retrieve
from catalog.cli.main import main
from catalog.sync.run import import_files
from tests.test_query import BJ, HZ, beijing, hangzhou

REGION_ENV = ("PAI_CATALOG_REGION", "ALIBABA_CLOUD_REGION_ID", "ALIBABA_CLOUD_PROFILE")


@pytest.fixture(autouse=True)
def _no_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No region from the developer's environment or aliyun CLI."""
    for name in REGION_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def two_regions(sqlite_path: Path, write_listing: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    db = str(sqlite_path)
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=db)
    import_files([write_listing(beijing())], "cn-beijing", db_option=db)
    monkeypatch.setenv("PAI_CATALOG_DB", db)
    return db


# The SDK's documented call forms, unchanged ---------------------------------------------------


def test_the_sdks_call_forms_run_unchanged(two_regions: str) -> None:
    info = retrieve(framework_name="TensorFlow", framework_version="2.3", region="cn-hangzhou")
    assert (info.framework_name, info.framework_version) == ("TensorFlow", "2.3")
    info = retrieve(
        "PyTorch", "latest", accelerator_type="GPU", image_scope=ImageScope.INFERENCE,
        region="cn-hangzhou",
    )  # fmt: skip
    assert info.image_scope == "inference" and info.accelerator_type == "GPU"
    listed = list_images("PyTorch", image_scope="inference")
    assert listed and all("inference" in i.scopes for i in listed)
    # Positional session, as the SDK's signatures have it: accepted and ignored.
    assert retrieve("PyTorch", "2.1", "GPU", "inference", None, region="cn-hangzhou") == retrieve(
        "PyTorch", "2.1", "GPU", "inference", region="cn-hangzhou"
    )
    assert list_images("PyTorch", None, "inference") == listed


def test_list_images_lists_the_training_scope_unless_told_as_the_sdk_does(two_regions: str) -> None:
    training = list_images("pytorch")
    assert training and all("training" in i.scopes for i in training)
    everything = list_images("pytorch", image_scope=None)
    assert len(everything) > len(training)
    cli = CliRunner().invoke(main, ["list", "pytorch", "--format", "json"])
    assert len(json.loads(cli.stdout)) == len(everything)  # the CLI lists every scope


def test_image_scope_has_the_sdks_names() -> None:
    assert (ImageScope.TRAINING, ImageScope.INFERENCE, ImageScope.DEVELOP) == (
        "training",
        "inference",
        "develop",
    )
    assert catalog.ImageScope is ImageScope


@pytest.mark.parametrize(
    ("call", "caught"),
    [
        (lambda: retrieve("NoSuchFramework", "1.0", region="cn-hangzhou"), ValueError),
        (lambda: retrieve("PyTorch", "1.0", "TPU", region="cn-hangzhou"), ValueError),
        (lambda: retrieve("PyTorch", "2.x.y", region="cn-hangzhou"), ValueError),
        (lambda: retrieve("PyTorch", "latest", image_scope="nowhere"), ValueError),
        (lambda: retrieve("PyTorch", "9.9", "GPU", region="cn-hangzhou"), RuntimeError),
        (lambda: retrieve("PyTorch", "latest", "GPU"), RuntimeError),  # two regions
    ],
    ids=["framework", "accelerator", "version", "scope", "not-found", "ambiguous"],
)
def test_the_sdks_except_clauses_catch_our_errors(
    two_regions: str, call: Any, caught: type[Exception]
) -> None:
    """Before: no error of ours was a ValueError or a RuntimeError, so all escaped them."""
    try:
        call()
    except caught as exc:
        assert isinstance(exc, catalog.CatalogError)
    else:
        raise AssertionError("no error")


# One region per request -----------------------------------------------------------------------


def test_a_request_in_several_regions_is_refused_whatever_version_wins(two_regions: str) -> None:
    """Before: latest answered from whichever region had the highest version, and asked for a
    region only when that version was in several."""
    with pytest.raises(catalog.AmbiguousError) as caught:
        retrieve("pytorch", "latest", "GPU")
    assert "are in 2 regions (cn-beijing, cn-hangzhou); choose one with region=, or set " in str(
        caught.value
    )
    cli = CliRunner().invoke(main, ["resolve", "pytorch", "--accelerator", "gpu"])
    assert cli.exit_code == 1 and cli.stdout == ""
    assert "choose one with --region, or set PAI_CATALOG_REGION" in cli.stderr


@pytest.mark.parametrize("variable", ["PAI_CATALOG_REGION", "ALIBABA_CLOUD_REGION_ID"])
def test_the_environment_binds_a_region(
    two_regions: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "cn-beijing")
    assert retrieve("pytorch", "latest", "GPU").region == "cn-beijing"
    assert retrieve("pytorch", "latest", "GPU", region="cn-hangzhou").region == "cn-hangzhou"
    monkeypatch.setenv(variable, "cn-hangzhou")  # remembered answers follow the variable
    assert retrieve("pytorch", "latest", "GPU").region == "cn-hangzhou"


def test_pai_catalog_region_comes_before_alibaba_cloud_region_id(
    two_regions: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_REGION_ID", "cn-hangzhou")
    monkeypatch.setenv("PAI_CATALOG_REGION", "cn-beijing")
    assert retrieve("pytorch", "latest", "GPU").region == "cn-beijing"


def write_cli_config(home: Path, current: str, **regions: str) -> None:
    folder = home / ".aliyun"
    folder.mkdir(parents=True)
    profiles = [
        {"name": name, "mode": "AK", "access_key_id": "id", "access_key_secret": "x",
         "region_id": region}
        for name, region in regions.items()
    ]  # fmt: skip
    (folder / "config.json").write_text(json.dumps({"current": current, "profiles": profiles}))


def test_the_aliyun_cli_profile_binds_a_region(
    two_regions: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    write_cli_config(home, "work", work="cn-beijing", other="cn-hangzhou")
    assert retrieve("pytorch", "latest", "GPU").region == "cn-beijing"
    runner = CliRunner()
    by_option = runner.invoke(
        main, ["--profile", "other", "resolve", "pytorch", "--accelerator", "gpu", "--json"]
    )
    assert by_option.exit_code == 0, by_option.stderr
    assert json.loads(by_option.stdout)["region"] == "cn-hangzhou"
    monkeypatch.setenv("ALIBABA_CLOUD_PROFILE", "other")
    assert retrieve("pytorch", "latest", "GPU").region == "cn-hangzhou"


def test_a_bound_region_without_the_image_says_where_it_came_from(
    two_regions: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAI_CATALOG_REGION", "eu-central-1")
    with pytest.raises(catalog.NotFoundError) as caught:
        retrieve("pytorch", "latest", "GPU")
    assert str(caught.value).endswith(
        "The region eu-central-1 came from PAI_CATALOG_REGION; region= chooses another."
    )


def test_one_region_in_the_catalog_answers_without_one(
    sqlite_path: Path, write_listing: Any
) -> None:
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=str(sqlite_path))
    assert retrieve("pytorch", "latest", "GPU", db=str(sqlite_path)).region == "cn-hangzhou"


# The registry host a user can pull from -------------------------------------------------------


def test_vpc_and_public_give_the_host_form_asked_for(two_regions: str) -> None:
    stored = retrieve("pytorch", "latest", "GPU", region="cn-hangzhou").image_uri
    assert stored is not None and stored.startswith(HZ + "/")  # dsw-registry.cn-hangzhou...
    vpc = retrieve("pytorch", "latest", "GPU", region="cn-hangzhou", endpoint="vpc").image_uri
    assert vpc == stored.replace("dsw-registry.", "dsw-registry-vpc.", 1)
    public = retrieve("pytorch", "latest", "GPU", region="cn-hangzhou", endpoint="public")
    assert public.image_uri == stored
    listed = list_images("pytorch", image_scope=None, region="cn-beijing", endpoint="vpc")
    assert listed and all(
        (i.image_uri or "").startswith(BJ.replace("dsw-registry.", "dsw-registry-vpc.", 1))
        for i in listed
    )
    cli = CliRunner().invoke(
        main, ["resolve", "pytorch", "--accelerator", "gpu", "--region", "cn-hangzhou", "--vpc"]
    )
    assert cli.stdout == vpc + "\n"
    with pytest.raises(catalog.UsageError, match="Unknown endpoint 'intranet'"):
        retrieve("pytorch", region="cn-hangzhou", endpoint="intranet")


def test_show_finds_an_image_by_either_host_form(two_regions: str) -> None:
    stored = retrieve("pytorch", "latest", "GPU", region="cn-hangzhou").image_uri
    assert stored is not None
    vpc_form = stored.replace("dsw-registry.", "dsw-registry-vpc.", 1)
    found = catalog.show(vpc_form)
    assert found.image_uri == stored  # as stored, unless asked otherwise
    assert catalog.show(stored, endpoint="vpc").image_uri == vpc_form


def test_sync_without_a_region_syncs_the_bound_one(
    sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_sync import REGION, fake
    from tests.test_sync_cli import ENV

    monkeypatch.setenv("PAI_CATALOG_REGION", REGION)
    with fake.FakePaiApi({REGION: fake.synthetic_images(5, REGION)}) as api:
        args = ["--db", str(sqlite_path), "sync", "--endpoint", api.url, "--json"]
        result = CliRunner().invoke(main, args, env=ENV)
    assert result.exit_code == 0, result.stderr
    [region] = json.loads(result.stdout)
    assert region["region"] == REGION
    monkeypatch.delenv("PAI_CATALOG_REGION")
    empty = CliRunner().invoke(main, ["--db", str(sqlite_path) + ".new", "sync"], env=ENV)
    assert empty.exit_code == 2 and "The catalog has no regions yet" in empty.stderr


def test_a_changed_profile_file_is_read_again(two_regions: str, tmp_path: Path) -> None:
    """The profile's region is remembered between calls, until the file changes."""
    home = tmp_path / "home"
    write_cli_config(home, "work", work="cn-beijing")
    assert retrieve("pytorch", "latest", "GPU").region == "cn-beijing"
    config = home / ".aliyun" / "config.json"
    config.write_text(config.read_text().replace('"cn-beijing"', '"cn-hangzhou"'))
    os.utime(config, ns=(1, 1))  # a different time, whatever the clock's resolution
    assert retrieve("pytorch", "latest", "GPU").region == "cn-hangzhou"


def test_a_profile_in_neither_file_is_an_error_not_no_region(
    two_regions: str, tmp_path: Path
) -> None:
    """--profile nosuch fell through to the several-regions error, as if no region were set."""
    write_cli_config(tmp_path / "home", "work", work="cn-beijing")
    result = CliRunner().invoke(
        main, ["--profile", "nosuch", "resolve", "pytorch", "--accelerator", "gpu"]
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Profile 'nosuch' is not in ~/.aliyun/config.json (its profiles: work); choose "
        "one with --profile (ALIBABA_CLOUD_PROFILE).\n"
    )


def test_profile_is_taken_after_the_command_too(two_regions: str, tmp_path: Path) -> None:
    write_cli_config(tmp_path / "home", "work", work="cn-beijing", other="cn-hangzhou")
    args = ["resolve", "pytorch", "--accelerator", "gpu", "--json", "--profile", "other"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["region"] == "cn-hangzhou"
