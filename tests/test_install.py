"""db install: the receiving end of publish. Each refusal is one line and changes nothing; an
install is atomic for readers and keeps the catalog it replaced as one backup."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import catalog
from catalog.cli.main import main
from catalog.config import SCHEMA_REVISION, parse_target
from catalog.errors import DatabaseError, InputError, SafetyError, UsageError
from catalog.store import db
from catalog.store.install import install, rollback
from catalog.store.publish import publish
from catalog.sync.run import import_files
from tests.conftest import api_image
from tests.test_query import beijing, fill, hangzhou

URI = "dsw-registry.cn-hangzhou.cr.aliyuncs.com/pai/pytorch:9.9.0-gpu-py310-cu121-ubuntu22.04"


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def reseal(path: Path) -> None:
    """A new checksum beside a file changed on purpose, as a careless publisher would write."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


@pytest.fixture
def published(sqlite_path: Path, write_listing: Any, tmp_path: Path) -> Path:
    """A published catalog of both regions, with its checksum, in a folder of its own."""
    fill(str(sqlite_path), write_listing)
    (tmp_path / "usb").mkdir()
    return publish(tmp_path / "usb" / "catalog.db", db=str(sqlite_path)).path


@pytest.fixture
def place(tmp_path: Path) -> Path:
    (tmp_path / "here").mkdir()
    return tmp_path / "here" / "catalog.db"


def test_install_puts_a_published_catalog_in_place(published: Path, place: Path) -> None:
    done = install(published, db_option=str(place))
    assert (done.database, done.revision, done.upgraded_from, done.backup) == (
        str(place),
        SCHEMA_REVISION,
        None,
        None,
    )
    assert done.images == len(hangzhou()) + len(beijing())
    assert {(c.region, c.added, c.removed) for c in done.changes} == {
        ("cn-hangzhou", len(hangzhou()), 0), ("cn-beijing", len(beijing()), 0)
    }  # fmt: skip
    assert catalog.retrieve("pytorch", "latest", "GPU", region="cn-beijing", db=str(place))
    assert sorted(os.listdir(place.parent)) == ["catalog.db", "catalog.db.lock"]
    assert place.read_bytes() == published.read_bytes()


def test_a_second_install_keeps_the_first_as_the_backup_and_rollback_swaps_them(
    published: Path, place: Path, write_listing: Any, tmp_path: Path
) -> None:
    install(published, db_option=str(place))
    first = place.read_bytes()
    source = tmp_path / "newer.db"
    fill(str(source), write_listing)
    import_files([write_listing([*hangzhou(), api_image("img-new", URI)])], "cn-hangzhou",
                 db_option=str(source))  # fmt: skip
    newer = publish(tmp_path / "usb" / "newer.db", db=str(source)).path
    done = install(newer, db_option=str(place))
    assert done.backup == f"{place}.previous"
    assert Path(done.backup).read_bytes() == first
    assert [(c.region, c.added, c.removed) for c in done.changes if c.added or c.removed] == [
        ("cn-hangzhou", 1, 0)
    ]
    assert catalog.show("img-new", db=str(place)).image_uri == URI
    back = rollback(db_option=str(place))
    assert place.read_bytes() == first and back.images == len(hangzhou()) + len(beijing())
    with pytest.raises(catalog.NotFoundError):
        catalog.show("img-new", db=str(place))
    rollback(db_option=str(place))  # and forward again
    assert catalog.show("img-new", db=str(place)).image_uri == URI


def test_an_older_catalog_is_refused_unless_allowed(
    published: Path, place: Path, write_listing: Any, tmp_path: Path
) -> None:
    source = tmp_path / "newer.db"
    fill(str(source), write_listing)
    newer = publish(tmp_path / "usb" / "newer.db", db=str(source)).path
    install(newer, db_option=str(place))
    before = files(place.parent)
    with pytest.raises(SafetyError) as caught:
        install(published, db_option=str(place))
    assert str(caught.value).startswith(
        f"{published} is older than {place}: cn-beijing was last synced "
    )
    assert str(caught.value).endswith(
        "nothing was installed. Pass --allow-older to install it anyway."
    )
    assert files(place.parent) == before
    install(published, db_option=str(place), allow_older=True)
    assert place.read_bytes() == published.read_bytes()


@pytest.mark.parametrize("damage", ["checksum", "no checksum", "corrupt", "other app", "newer"])
def test_a_bad_file_is_refused_in_one_line_and_nothing_changes(
    published: Path, place: Path, damage: str
) -> None:
    install(published, db_option=str(place))
    before = files(place.parent)
    bad = published
    if damage == "checksum":
        with open(bad, "r+b") as handle:
            handle.seek(-100, os.SEEK_END)
            handle.write(b"\xff" * 10)
    elif damage == "no checksum":
        bad.with_name(bad.name + ".sha256").unlink()
    elif damage == "corrupt":
        bad.write_bytes(bad.read_bytes()[:20_000])
        reseal(bad)
    elif damage == "other app":
        bad.unlink()
        sqlite3.connect(bad).execute("CREATE TABLE notes (a)").connection.close()
        reseal(bad)
    else:
        conn = sqlite3.connect(bad)
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
        conn.commit()
        conn.close()
        reseal(bad)
    expected = {
        "checksum": (InputError, f"{bad} does not match its checksum in catalog.db.sha256: the "
                     "copy is damaged or not the file published; nothing was installed."),
        "no checksum": (InputError, f"No checksum catalog.db.sha256 beside {bad}: copy it with "
                        "the catalog (publish writes it), or pass --no-verify to install "
                        "without checking."),
        "corrupt": (DatabaseError, f"{bad} is corrupt or not an SQLite database"),
        "other app": (DatabaseError, f"{bad} is not a pai-catalog database (no schema "
                      "revision); point --db at another file."),
        "newer": (DatabaseError, f"{bad} is at schema revision 0099, which this pai-catalog "
                  "does not know: it was written by a newer version; upgrade pai-catalog."),
    }[damage]  # fmt: skip
    with pytest.raises(expected[0]) as caught:
        install(bad, db_option=str(place))
    assert str(caught.value).startswith(expected[1])
    assert files(place.parent) == before


def test_a_file_at_an_older_schema_is_upgraded_on_the_copy(
    published: Path, place: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old.db"
    old.write_bytes(published.read_bytes())
    engine = db.make_engine(parse_target(str(old)))
    try:
        db.downgrade(engine, parse_target(str(old)), "0007")
    finally:
        engine.dispose()
    reseal(old)
    untouched = old.read_bytes()
    done = install(old, db_option=str(place))
    assert (done.revision, done.upgraded_from) == (SCHEMA_REVISION, "0007")
    assert old.read_bytes() == untouched  # the copy was upgraded, not the file given
    conn = sqlite3.connect(place)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    finally:
        conn.close()
    assert catalog.retrieve("pytorch", "latest", "GPU", region="cn-beijing", db=str(place))


def test_install_over_a_synced_catalog_folds_its_wal_and_keeps_it_whole(
    published: Path, sqlite_path: Path, write_listing: Any
) -> None:
    """The catalog in place is in WAL mode with a -wal beside it; the new file must not be read
    with the old -wal, and the backup must hold everything the old one did."""
    mine = api_image("img-mine", URI.replace("hangzhou", "shanghai"))
    import_files([write_listing([mine])], "cn-shanghai", db_option=str(sqlite_path))
    reader = sqlite3.connect(sqlite_path)  # keeps the -wal in use, as a service would
    assert reader.execute("SELECT count(*) FROM image").fetchone()[0] > 0
    done = install(published, db_option=str(sqlite_path), allow_older=True)
    assert catalog.retrieve("pytorch", "latest", "GPU", region="cn-beijing", db=str(sqlite_path))
    backup = Path(str(done.backup))
    conn = sqlite3.connect(backup)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute(
            "SELECT image_id FROM image WHERE region = 'cn-shanghai'"
        ).fetchall() == [("img-mine",)]
    finally:
        conn.close()
    # The reader that was open reads the catalog it opened, whole.
    assert reader.execute("SELECT count(*) FROM image WHERE region = 'cn-shanghai'").fetchone() == (
        1,
    )
    reader.close()


def test_the_command_line_says_what_it_did(published: Path, place: Path) -> None:
    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["--db", str(place), "db", "install", *args])

    done = run(str(published))
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[0] == (
        f"{place}: installed {published} ({len(hangzhou()) + len(beijing())} images, schema "
        f"revision {SCHEMA_REVISION})"
    )
    assert f"  cn-beijing: {len(beijing())} added, 0 removed; last sync none -> " in done.stdout
    loud = run("--no-verify", str(published))
    assert loud.exit_code == 0 and loud.stderr == (
        f"Warning: installed {published} without checking its checksum.\n"
    )
    assert loud.stdout == f"{place}: {published} is installed already; nothing changed\n"
    back = run("--rollback")  # the same file twice left the one backup there was: none
    assert back.exit_code == 1 and back.stderr == (
        f"Error: There is no catalog.db.previous beside {place}: nothing to roll back to.\n"
    )
    neither = run()
    assert neither.exit_code == 2 and neither.stderr.splitlines()[-1] == (
        "Error: Give the published catalog FILE to install."
    )


# --- a fresh look's findings ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "other app"])
def test_a_file_in_place_that_is_no_catalog_is_not_replaced(
    published: Path, place: Path, kind: str
) -> None:
    """install replaced a text file or another program's database at --db, and a second install
    then dropped it from the backup too; the other writers refuse such a file."""
    if kind == "text":
        place.write_text("my notes\n")
    else:
        sqlite3.connect(place).execute("CREATE TABLE users (name)").connection.close()
    before = files(place.parent)
    with pytest.raises(DatabaseError, match=r"is not a pai-catalog database|is corrupt or not an"):
        install(published, db_option=str(place))
    assert {k: v for k, v in files(place.parent).items() if k != "catalog.db.lock"} == before


def test_the_catalog_never_has_a_second_name_and_leftovers_go(
    published: Path, place: Path, monkeypatch: pytest.MonkeyPatch, write_listing: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The backup was a hard link: an install killed between the link and the rename left the
    catalog with two names, which every writer then refused; a killed install's copy stayed."""
    install(published, db_option=str(place))
    source = tmp_path / "other.db"
    fill(str(source), write_listing)
    other = publish(tmp_path / "usb" / "other.db", db=str(source)).path
    (place.parent / ".catalog.db.install.99999.tmp").write_bytes(b"x" * 100)  # a killed one's
    from catalog.store import install as module

    real = os.replace

    def crash_on_the_last_rename(src: Any, dst: Any) -> None:
        if Path(dst) == place:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(module.os, "replace", crash_on_the_last_rename)
    with pytest.raises(OSError):
        install(other, db_option=str(place), allow_older=True)
    monkeypatch.undo()
    assert place.stat().st_nlink == 1
    assert not [p for p in place.parent.iterdir() if p.name.endswith(".tmp")]
    import_files([], "cn-beijing", db_option=str(place), allow_mass_removal=True)  # writable


def test_installing_the_catalog_itself_or_the_same_file_again_keeps_the_backup(
    published: Path, place: Path, write_listing: Any, tmp_path: Path
) -> None:
    install(published, db_option=str(place))
    source = tmp_path / "newer.db"
    fill(str(source), write_listing)
    newer = publish(tmp_path / "usb" / "newer.db", db=str(source)).path
    install(newer, db_option=str(place))
    backup = place.with_name("catalog.db.previous").read_bytes()
    with pytest.raises(UsageError, match="is the catalog in place"):
        install(place, db_option=str(place), verify=False)
    again = install(newer, db_option=str(place))
    assert again.unchanged and again.backup is None
    assert place.with_name("catalog.db.previous").read_bytes() == backup


def test_a_symbolic_link_to_the_catalog_keeps_naming_it(published: Path, tmp_path: Path) -> None:
    real = tmp_path / "real" / "catalog.db"
    real.parent.mkdir()
    link = tmp_path / "here.db"
    link.symlink_to(real)
    done = install(published, db_option=str(link))
    assert link.is_symlink() and done.database == str(real)
    assert real.read_bytes() == published.read_bytes()


@pytest.mark.parametrize("damage", ["time", "table", "view"])
def test_a_file_whose_contents_are_not_a_catalogs_is_refused_in_one_line(
    published: Path, place: Path, damage: str
) -> None:
    """A run time that is no time, or a table gone with alembic_version kept, ended in a
    traceback; a view gone was installed."""
    statement = {
        "time": "UPDATE sync_run SET finished_at = 'garbage'",
        "table": "DROP TABLE image_scope",
        "view": "DROP VIEW v_image",
    }[damage]
    conn = sqlite3.connect(published)
    conn.execute(statement)
    conn.commit()
    conn.close()
    reseal(published)
    with pytest.raises(DatabaseError) as caught:
        install(published, db_option=str(place))
    assert str(caught.value).startswith(f"{published} is ")
    assert not place.exists()
