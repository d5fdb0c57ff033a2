"""The pai-catalog command line: parse options, call one library function, render, map errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from catalog import __version__, query
from catalog.errors import CatalogError
from catalog.errors import UsageError as CatalogUsageError
from catalog.filters import SCOPES
from catalog.output import Format, render, render_record

F = TypeVar("F", bound=Callable[..., Any])
LIST_COLUMNS = (
    "image_uri",
    "framework_name",
    "framework_version",
    "accelerator_type",
    "scopes",
    "python_version",
    "cuda_version",
    "region",
)


def _errors(func: F) -> F:
    """Domain errors become one ``Error: ...`` line: exit 2 for usage, 1 for the rest."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CatalogUsageError as exc:
            raise click.UsageError(str(exc)) from None
        except CatalogError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _default_format() -> Format:
    return Format.TABLE if sys.stdout.isatty() else Format.NL


def _format_option(func: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice([f.value for f in Format]),
        help="Output format [default: table on a terminal, nl otherwise].",
    )(func)


def _filter_options(func: F) -> F:
    options = [
        click.option("--accelerator", help="CPU, GPU or another chip type (any case)."),
        click.option(
            "--scope",
            type=click.Choice(SCOPES, case_sensitive=False),
            help="training (DLC), inference (EAS) or develop (DSW).",
        ),
        click.option("--region", help="Region id, such as cn-hangzhou."),
        click.option("--python", "python_version", help="Python version: 3.10 or py310."),
        click.option("--cuda", "cuda_version", help="CUDA version: 12.1 or cu121."),
        click.option("--os", "os_name", help="OS, or its prefix: ubuntu22.04, ubuntu."),
        click.option("--as-of", help="Answer as the catalog stood at this ISO 8601 date or time."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pai-catalog")
@click.option(
    "--db",
    envvar="PAI_CATALOG_DB",
    metavar="PATH_OR_URL",
    help="Catalog database: a file path or an SQLAlchemy URL [env: PAI_CATALOG_DB; default: "
    "your synced catalog if it exists, else the shipped one].",
)
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """An offline catalog of Alibaba Cloud PAI's official container images."""
    ctx.obj = db


@main.command()
@click.argument("framework")
@click.argument("version", default="latest")
@_filter_options
@click.option("--json", "as_json", is_flag=True, help="Print the whole ImageInfo as JSON.")
@click.pass_obj
@_errors
def resolve(db: str | None, /, framework: str, version: str, as_json: bool, **filters: Any) -> None:
    """Print the image URI for FRAMEWORK at VERSION (latest, 2.1.0, 2.1, or a range like
    '>=2.0,<2.2').

    Defaults follow the PAI SDK: --accelerator CPU and --scope training.
    """
    info = query.retrieve(
        framework,
        version,
        filters["accelerator"] or "CPU",
        filters["scope"] or "training",
        region=filters["region"],
        python_version=filters["python_version"],
        cuda_version=filters["cuda_version"],
        os=filters["os_name"],
        as_of=filters["as_of"],
        db=db,
    )
    if as_json:
        render([info], Format.NL, sys.stdout)
    else:
        click.echo(info.image_uri)


@main.command("list")
@click.argument("framework", required=False)
@click.option("--version", "version", help="A version, prefix or range to match.")
@_filter_options
@click.option("--include-removed", is_flag=True, help="Also list images no longer in the API.")
@_format_option
@click.pass_obj
@_errors
def list_command(
    db: str | None, /, framework: str | None, version: str | None, fmt: str | None, **filters: Any
) -> None:
    """List images, highest version first."""
    images = query.list_images(
        framework,
        framework_version=version,
        image_scope=filters["scope"],
        accelerator_type=filters["accelerator"],
        region=filters["region"],
        python_version=filters["python_version"],
        cuda_version=filters["cuda_version"],
        os=filters["os_name"],
        include_removed=filters["include_removed"],
        as_of=filters["as_of"],
        labels=fmt in ("json", "nl"),
        db=db,
    )
    chosen = Format(fmt) if fmt else _default_format()
    columns = LIST_COLUMNS if chosen in (Format.TABLE, Format.CSV) else None
    render(images, chosen, sys.stdout, columns)


@main.command()
@click.argument("framework")
@click.option("--accelerator", help="CPU, GPU or another chip type (any case).")
@click.option("--scope", type=click.Choice(SCOPES, case_sensitive=False))
@click.option("--region", help="Region id, such as cn-hangzhou.")
@click.option("--include-removed", is_flag=True, help="Also count images no longer in the API.")
@click.option("--as-of", help="Answer as the catalog stood at this ISO 8601 date or time.")
@_format_option
@click.pass_obj
@_errors
def versions(db: str | None, /, framework: str, fmt: str | None, **filters: Any) -> None:
    """List FRAMEWORK's versions, highest first (one per line by default)."""
    found = query.list_versions(
        framework,
        image_scope=filters["scope"],
        accelerator_type=filters["accelerator"],
        region=filters["region"],
        include_removed=filters["include_removed"],
        as_of=filters["as_of"],
        db=db,
    )
    if fmt is None:
        click.echo("\n".join(found))
    else:
        render([{"version": v} for v in found], Format(fmt), sys.stdout)


@main.command()
@click.argument("uri_or_id")
@click.option("--region", help="Region id, when the image is in several.")
@_format_option
@click.pass_obj
@_errors
def show(db: str | None, /, uri_or_id: str, region: str | None, fmt: str | None) -> None:
    """Show one image, by URI or ImageId, with its labels."""
    info = query.show(uri_or_id, region=region, db=db)
    if fmt is None or fmt == Format.TABLE.value:
        render_record(info, sys.stdout)
    else:
        render([info], Format(fmt), sys.stdout)


RUN_COLUMNS = (
    "run_id", "region", "source", "status", "started_at", "seconds", "pages", "seen", "added",
    "changed", "removed", "restored", "error",
)  # fmt: skip
DIFF_COLUMNS = ("change", "region", "image_id", "uri", "framework", "framework_version", "fields")
EVENT_COLUMNS = ("at", "run_id", "kind", "region", "image_id", "uri", "framework_version",
                 "changed_fields")  # fmt: skip


def _render_rows(rows: list[Any], fmt: str | None, table_columns: tuple[str, ...]) -> None:
    chosen = Format(fmt) if fmt else _default_format()
    columns = table_columns if chosen in (Format.TABLE, Format.CSV) else None
    render(rows, chosen, sys.stdout, columns)


@main.command()
@click.option("--region", help="Only this region's runs.")
@click.option("--status", type=click.Choice(["ok", "failed", "running"]), help="Only these runs.")
@click.option("--limit", type=click.IntRange(1), help="At most this many, newest first.")
@_format_option
@click.pass_obj
@_errors
def runs(db: str | None, /, fmt: str | None, **filters: Any) -> None:
    """List sync and import runs, newest first, with their counts."""
    from catalog import history

    _render_rows(history.runs(db=db, **filters), fmt, RUN_COLUMNS)


@main.command()
@click.argument("run_a", type=int, required=False)
@click.argument("run_b", type=int, required=False)
@click.option("--region", help="Only this region (default: every region).")
@_format_option
@click.pass_obj
@_errors
def diff(
    db: str | None, /, run_a: int | None, run_b: int | None, region: str | None, fmt: str | None
) -> None:
    """Images added, removed and changed between RUN_A and RUN_B.

    Default: the last two successful runs of each region. With one run, compare it with the
    region's latest successful run.
    """
    from catalog import history

    _render_rows(history.diff(run_a, run_b, region=region, db=db), fmt, DIFF_COLUMNS)


@main.command("history")
@click.argument("uri_or_id")
@click.option("--region", help="Region, when the image is in several.")
@_format_option
@click.pass_obj
@_errors
def history_command(db: str | None, /, uri_or_id: str, region: str | None, fmt: str | None) -> None:
    """Every event of one image (by URI or ImageId), oldest first."""
    from catalog import history

    _render_rows(history.image_history(uri_or_id, region=region, db=db), fmt, EVENT_COLUMNS)


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--region", required=True, help="The region these listings are of.")
@click.option(
    "--allow-mass-removal", is_flag=True, help="Store it even if it removes over 20% of images."
)
@click.pass_obj
@_errors
def import_command(
    db: str | None, /, files: tuple[Path, ...], region: str, allow_mass_removal: bool
) -> None:
    """Import ListImages response bodies (all pages of one listing) as one run of REGION.

    Images the files no longer list are marked removed, as a sync would.
    """
    from catalog.sync import import_files

    stats = import_files(files, region, db_option=db, allow_mass_removal=allow_mass_removal)
    click.echo(
        f"{stats.region}: {stats.seen} seen, {stats.added} added, {stats.changed} changed, "
        f"{stats.removed} removed, {stats.restored} restored (run {stats.run_id})",
        err=True,
    )


@main.command("sync")
@click.option(
    "--region",
    "regions",
    multiple=True,
    envvar="PAI_CATALOG_REGIONS",
    help="Region to sync; repeat for several [env: PAI_CATALOG_REGIONS; default: the "
    "catalog's regions].",
)
@click.option(
    "--endpoint",
    "endpoints",
    multiple=True,
    envvar="PAI_CATALOG_ENDPOINT",
    metavar="[REGION=]URL",
    help="API base URL for every region, or for one with REGION=URL; repeatable "
    "[env: PAI_CATALOG_ENDPOINT].",
)
@click.option("--vpc", is_flag=True, help="Use the VPC endpoints (aiworkspace-vpc.REGION...).")
@click.option(
    "--page-size",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Images asked for per page (a server may send fewer).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=4,
    show_default=True,
    help="Pages fetched at once after the first.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=5,
    show_default=True,
    help="Retries per request after throttling, 5xx or network errors.",
)
@click.option(
    "--backoff",
    type=click.FloatRange(0, 60),
    default=0.5,
    show_default=True,
    help="First retry delay in seconds; doubles each retry, with jitter.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Crawl until two passes agree, to catch images shifted between pages.",
)
@click.option(
    "--allow-mass-removal",
    is_flag=True,
    help="Store a listing even if it removes over 20% (and over 5) of a region's images.",
)
@click.option("--wait", is_flag=True, help="Wait for a running sync instead of exiting.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("--quiet", "-q", is_flag=True, help="Print failures only.")
@click.pass_obj
@_errors
def sync_command(db: str | None, /, as_json: bool, quiet: bool, **opts: Any) -> None:
    """Crawl PAI's ListImages API into the catalog, one transaction per region.

    Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET
    (and ALIBABA_CLOUD_SECURITY_TOKEN), ~/.aliyun/config.json, ~/.alibabacloud/credentials.ini,
    or the ECS RAM role. Exit status 1 if any region failed.
    """
    from catalog.sync import results_as_dicts, sync, sync_options

    progress = _progress_line if sys.stderr.isatty() and not (quiet or as_json) else None
    results = sync(sync_options(**opts), db_option=db, progress=progress)
    if progress is not None:
        click.echo("\r\033[K", nl=False, err=True)
    if as_json:
        render(results_as_dicts(results), Format.JSON, sys.stdout)
    for result in results:
        if not as_json and (not quiet or not result.ok):
            click.echo(result.summary(), err=not result.ok)
    if not all(result.ok for result in results):
        sys.exit(1)


def _progress_line(region: str, done: int, planned: int) -> None:
    click.echo(f"\r\033[K{region}: page {done}/{planned}", nl=False, err=True)


@main.group("db")
def db_group() -> None:
    """Create, upgrade and check the database schema."""


@db_group.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_obj
@_errors
def upgrade(db: str | None, /, revision: str) -> None:
    """Create the database or migrate it to REVISION."""
    from catalog import db as database

    click.echo(database.upgrade_command(db, revision))


@db_group.command()
@click.pass_obj
@_errors
def current(db: str | None, /) -> None:
    """Print the database's schema revision and the code's head."""
    from catalog import db as database

    click.echo(database.current_command(db))


@db_group.command()
@click.option("--wait", is_flag=True, help="Wait for a running sync instead of exiting.")
@click.pass_obj
@_errors
def reparse(db: str | None, /, wait: bool) -> None:
    """Read every stored image again with this version's parsing rules.

    Run it after upgrading pai-catalog: rows keep what older rules read until then. Only
    derived fields (framework, version, accelerator, scopes...) change; history stays.
    """
    from catalog.sync import reparse as reparse_catalog

    click.echo(reparse_catalog(db, wait=wait))


@db_group.command()
@click.pass_obj
@_errors
def check(db: str | None, /) -> None:
    """Exit 1 unless the database is at head and matches the models."""
    from catalog import db as database

    click.echo(database.check_command(db))
