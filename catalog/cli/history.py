"""Commands for history and analysis: runs, diff, history, sql, export, publish, info."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from catalog.cli.options import (
    default_format,
    errors,
    format_option,
    mirror_option,
    render_rows,
)
from catalog.cli.output import Format, as_dict, render, render_one, render_record

RUN_COLUMNS = (
    "run_id", "region", "source", "status", "started_at", "seconds", "pages", "seen", "added",
    "changed", "removed", "restored", "error",
)  # fmt: skip
DIFF_COLUMNS = ("kind", "region", "image_id", "image_uri", "framework_name", "framework_version",
                "changed_fields")  # fmt: skip
EVENT_COLUMNS = ("run_started_at", "run_id", "kind", "region", "image_id", "image_uri",
                 "framework_name", "framework_version", "changed_fields")  # fmt: skip
RUN_ID_MAX = 2**63 - 1  # run ids and limits: a signed 64-bit integer in every backend


@click.command()
@click.option("--region", help="Only this region's runs.")
@click.option("--status", type=click.Choice(["ok", "failed", "running"]), help="Only these runs.")
@click.option(
    "--limit", type=click.IntRange(1, RUN_ID_MAX), help="At most this many, newest first."
)
@format_option
@click.pass_obj
@errors
def runs(db: str | None, /, fmt: str | None, **filters: Any) -> None:
    """List sync, import and digests runs, newest first, with their counts."""
    from catalog.read import history

    render_rows(history.runs(db=db, **filters), fmt, RUN_COLUMNS)


@click.command()
@click.argument("run_a", type=click.IntRange(1, RUN_ID_MAX), required=False)
@click.argument("run_b", type=click.IntRange(1, RUN_ID_MAX), required=False)
@click.option("--region", help="Only this region (default: every region).")
@format_option
@click.pass_obj
@errors
def diff(
    db: str | None, /, run_a: int | None, run_b: int | None, region: str | None, fmt: str | None
) -> None:
    """Images added, removed and changed between RUN_A and RUN_B.

    Default: the last two successful runs of each region. With one run, compare it with the
    region's latest successful run.
    """
    from catalog.read import history

    render_rows(history.diff(run_a, run_b, region=region, db=db), fmt, DIFF_COLUMNS)


@click.command("history")
@click.argument("uri_or_id")
@click.option("--region", help="Region, when the image is in several.")
@format_option
@click.pass_obj
@errors
def history_command(db: str | None, /, uri_or_id: str, region: str | None, fmt: str | None) -> None:
    """Every event of one image (by URI or ImageId), oldest first."""
    from catalog.read import history

    render_rows(history.image_history(uri_or_id, region=region, db=db), fmt, EVENT_COLUMNS)


@click.command()
@click.argument("statement")
@click.option(
    "-p",
    "--param",
    "params",
    type=(str, str),
    multiple=True,
    metavar="NAME VALUE",
    help="A value for :NAME in the statement; repeatable.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, 86_400),  # catalog.read.sql.MAX_TIMEOUT: a day
    default=30.0,  # catalog.read.sql.SQL_TIMEOUT; a test keeps the two equal
    show_default=True,
    metavar="SECONDS",
    help="Stop the statement after this long, fetching its rows included; 0 for no limit.",
)
@format_option
@click.pass_obj
@errors
def sql(
    db: str | None,
    /,
    statement: str,
    params: tuple[tuple[str, str], ...],
    timeout: float,
    fmt: str | None,
) -> None:
    """Run one read-only SQL statement (SELECT, WITH, read PRAGMAs) and print its rows.

    The database is opened read-only: writes, ATTACH, COPY and schema changes are refused.
    Ctrl-C or SIGTERM stops the statement, on a server too. On SQLite, sorting and temporary
    results stay in memory, at most 512 MiB. On PostgreSQL, connect as a role that can only
    read: a role that can write the catalog, a superuser, a replication role and members of
    pg_read_server_files, pg_write_server_files, pg_execute_server_program or
    pg_signal_backend are refused.
    A column name that repeats gets a suffix (a, a_2). docs/SCHEMA.md documents the tables
    and views.
    """
    from catalog.read.sql import run_sql

    result = run_sql(statement, dict(params), db=db, timeout=timeout)
    columns = _distinct(result.columns)
    rows = (dict(zip(columns, row, strict=True)) for row in result.rows)
    chosen = Format(fmt) if fmt else default_format()
    render(rows, chosen, sys.stdout, columns)


def _distinct(names: tuple[str, ...]) -> list[str]:
    """Column names made distinct, so no column's values overwrite another's in a row:
    SELECT 1 AS a, 2 AS a gives a and a_2."""
    taken, out = set(names), []
    for name in names:
        unique, n = name, 1
        while unique in out:  # a suffix that no other column has, nor will have
            n += 1
            unique = f"{name}_{n}"
            if unique in taken:
                unique = name
        out.append(unique)
    return out


@click.command()
@click.option("--format", "fmt", type=click.Choice([f.value for f in Format]), default="json",
              show_default=True)  # fmt: skip
@click.option("--as-of", help="The catalog as it stood at this ISO 8601 date or time.")
@mirror_option
@click.pass_obj
@errors
def export(db: str | None, /, fmt: str, as_of: str | None, mirror: str | None) -> None:
    """Write every current image (or as of a time) with its parsed fields and labels."""
    from catalog.read.export import export_rows

    render(export_rows(as_of=as_of, mirror=mirror, db=db), Format(fmt), sys.stdout)


@click.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--datasette",
    is_flag=True,
    help="Also write Datasette metadata beside OUT (catalog.db: catalog.metadata.json).",
)
@click.pass_obj
@errors
def publish(db: str | None, /, out: Path, datasette: bool) -> None:
    """Write a compact, checked copy of the catalog to OUT for machines with no network.

    Also writes OUT.sha256. The copy opens read-only, even on a read-only filesystem.
    With --datasette, the metadata describes every table, view and column as docs/SCHEMA.md
    does, offers facets, its example queries as canned queries, and says where the data came
    from: datasette serve --immutable catalog.db -m catalog.metadata.json
    """
    from catalog.read import datasette as metadata
    from catalog.store.publish import publish as publish_catalog

    beside = metadata.metadata_path(out.expanduser().absolute()) if datasette else None
    if beside is not None:
        metadata.check_replaceable(beside)  # before the copy is written, not after
        # An older copy's metadata goes first: stopped midway, the new copy is never
        # described by the old one.
        beside.unlink(missing_ok=True)
    done = publish_catalog(out, db=db)
    click.echo(
        f"{done.path}: {done.images} images, schema revision {done.revision}, "
        f"{done.bytes} bytes, sha256 {done.sha256}"
    )
    if beside is not None:
        written = metadata.write_metadata(beside, db=str(done.path))
        click.echo(f"{written}: Datasette metadata for {done.path.name}")


@click.command()
@format_option
@click.pass_obj
@errors
def info(db: str | None, /, fmt: str | None) -> None:
    """Where the catalog is, its schema revision, and each region's images and last sync."""
    from catalog.read.export import info as catalog_info

    found = catalog_info(db=db)
    chosen = Format(fmt) if fmt else default_format()
    if chosen is Format.TABLE:
        record = {k: v for k, v in as_dict(found).items() if k != "regions"}
        render_record(record, sys.stdout)
        click.echo("")
        render(found.regions, Format.TABLE, sys.stdout)
    else:
        render_one(found, chosen, sys.stdout)
