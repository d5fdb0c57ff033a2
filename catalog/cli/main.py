"""The pai-catalog command line: parse options, call one library function, render, map errors."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import click

from catalog.cli import history as cli_history
from catalog.cli import output
from catalog.cli import write as cli_write
from catalog.cli.mirror import mirror_group
from catalog.cli.options import (
    configure_logging,
    db_after_the_command,
    default_format,
    errors,
    filter_options,
    format_option,
    format_option_with,
    mirror_option,
    network_option,
    platform_option,
    stop_on_sigterm,
    stopped,
)
from catalog.cli.output import Format, render, render_one, visible
from catalog.cli.timeline import timeline_command
from catalog.config import __version__
from catalog.parse import SCOPES
from catalog.read import images
from catalog.read.connection import DEFAULT_MAX_AGE

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pai-catalog")
@click.option(
    "--db",
    envvar="PAI_CATALOG_DB",
    metavar="PATH_OR_URL",
    help="Catalog database: a file path or an SQLAlchemy URL [env: PAI_CATALOG_DB; default: "
    "your synced catalog if it exists, else the shipped one].",
)
@click.option(
    "--log-level",
    envvar="PAI_CATALOG_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="Log detail on stderr for the catalog's own messages [env: PAI_CATALOG_LOG_LEVEL].",
)
@click.option(
    "--profile",
    envvar="ALIBABA_CLOUD_PROFILE",
    help="The aliyun CLI profile (in ~/.aliyun/config.json) whose credentials sync uses and "
    "whose region_id binds a region [env: ALIBABA_CLOUD_PROFILE; default: its current one].",
)
@click.option(
    "--full-width",
    is_flag=True,
    help="Print tables whole; on a terminal they are fitted to its width, long values cut "
    "in the middle.",
)
@click.pass_context
def main(
    ctx: click.Context, db: str | None, log_level: str, profile: str | None, full_width: bool
) -> None:
    """An offline catalog of Alibaba Cloud PAI's official container images."""
    fit = sys.stdout.isatty() and not full_width
    output.TABLE_WIDTH[0] = shutil.get_terminal_size().columns if fit else None
    if profile:
        os.environ["ALIBABA_CLOUD_PROFILE"] = profile  # read by the credentials and the region
    configure_logging(log_level)
    stop_on_sigterm(ctx)
    ctx.obj = db


class _Days(click.FloatRange):
    """A number of days; a bad one from the environment names its variable."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            name = param.envvar if param is not None and isinstance(param.envvar, str) else None
            if name and os.environ.get(name) == value:  # the value came from the variable
                exc.message = f"{exc.message.rstrip('.')} (from {name})."
            raise


@main.command()
@click.argument("framework")
@click.argument("version", default="latest")
@filter_options
@platform_option
@network_option
@mirror_option
@click.option(
    "--pin",
    is_flag=True,
    help="Answer name@sha256:... (and so behind --mirror), the digest the tag pointed at when "
    "pai-catalog digests last asked; an error where none is known.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole ImageInfo as JSON.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in Format]),
    help="Print the whole ImageInfo in this format (json is --json) [default: the URI alone].",
)
@click.option(
    "--max-age",
    type=_Days(0),
    envvar="PAI_CATALOG_MAX_AGE",
    default=DEFAULT_MAX_AGE,
    show_default=True,
    metavar="DAYS",
    help="Warn on stderr when your catalog's last successful sync is this old; 0 never warns "
    "[env: PAI_CATALOG_MAX_AGE]. The shipped catalog says once that it is a demonstration.",
)
@click.pass_obj
@errors
def resolve(
    db: str | None,
    /,
    framework: str,
    version: str,
    as_json: bool,
    fmt: str | None,
    max_age: float,
    pin: bool,
    **filters: Any,
) -> None:
    """Print the image URI for FRAMEWORK at VERSION (latest, 2.1.0, 2.1, or a range like
    '>=2.0,<2.2').

    Defaults follow the PAI SDK: --accelerator CPU and --scope training. Without --region,
    the region is PAI_CATALOG_REGION, else ALIBABA_CLOUD_REGION_ID, else the region_id of the
    aliyun CLI profile in use; with none of them, a request whose images lie in several
    regions is refused, naming them.
    """
    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json and --format {fmt} disagree; give one of them.")
    if max_age != max_age:  # NaN: checked before the answer, which would print first
        raise click.BadParameter("give a number of days, not nan.", param_hint="'--max-age'")
    info = images.retrieve(
        framework,
        version,
        "CPU" if filters["accelerator"] is None else filters["accelerator"],
        filters["scope"] or "training",
        region=filters["region"],
        python_version=filters["python_version"],
        cuda_version=filters["cuda_version"],
        os=filters["os_name"],
        as_of=filters["as_of"],
        endpoint=filters["network"],
        mirror=filters["mirror"],
        platform=filters["platform"],
        pin=pin,
        db=db,
    )
    if as_json or fmt:
        render_one(info, Format(fmt or "json"), sys.stdout)
    else:
        click.echo(visible(info.mirror_uri or info.image_uri or ""))
    from catalog.read.connection import staleness_warning  # loaded already by the answer

    warning = staleness_warning(max_age, db=db)
    if warning:
        click.echo(warning, err=True)


@main.command("list")
@click.argument("framework", required=False)
@click.option("--version", "version", help="A version, prefix or range to match.")
@filter_options
@platform_option
@network_option
@mirror_option
@click.option("--include-removed", is_flag=True, help="Also list images no longer in the API.")
@format_option
@click.pass_obj
@errors
def list_command(
    db: str | None, /, framework: str | None, version: str | None, fmt: str | None, **filters: Any
) -> None:
    """List images by framework, then highest version first: every scope and region unless
    --scope or --region narrows it (catalog.list_images, like the PAI SDK's, lists the
    training scope unless told otherwise)."""
    chosen = Format(fmt) if fmt else default_format()
    found = images.list_images(
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
        labels=chosen in (Format.JSON, Format.NL),  # tables and CSV show no labels
        endpoint=filters["network"],
        mirror=filters["mirror"],
        platform=filters["platform"],
        db=db,
    )
    columns = LIST_COLUMNS if chosen in (Format.TABLE, Format.CSV) else None
    if columns is not None and found and found[0].mirror_uri is not None:
        columns = ("mirror_uri", *columns[1:])  # the URI to pull; JSON carries both
    render(found, chosen, sys.stdout, columns)


@main.command()
@click.argument("framework")
@click.option("--accelerator", help="CPU, GPU or another chip type (any case), or any.")
@click.option(
    "--scope",
    type=click.Choice([*SCOPES, "any"], case_sensitive=False),
    help="training (DLC), inference (EAS) or develop (DSW); any: every image.",
)
@click.option("--region", help="Region id, such as cn-hangzhou.")
@click.option("--include-removed", is_flag=True, help="Also count images no longer in the API.")
@click.option("--as-of", help="Answer as the catalog stood at this ISO 8601 date or time.")
@format_option_with("one line per version")
@click.pass_obj
@errors
def versions(db: str | None, /, framework: str, fmt: str | None, **filters: Any) -> None:
    """List FRAMEWORK's versions, highest first, one line each: spellings of one version
    (2.1 and 2.1.0) and its build variants (1.12PAI) follow it in parentheses. --format json
    gives each version's spellings, first sighting, regions and accelerators."""
    found = images.version_details(
        framework,
        image_scope=filters["scope"],
        accelerator_type=filters["accelerator"],
        region=filters["region"],
        include_removed=filters["include_removed"],
        as_of=filters["as_of"],
        db=db,
    )
    if fmt is None:
        width = max(len(group.version) for group in found)
        for group in found:
            also = f"  ({', '.join(group.spellings)})" if group.spellings else ""
            click.echo(visible(f"{group.version:<{width}}{also}".rstrip()))
    else:
        render(found, Format(fmt), sys.stdout)


@main.command()
@click.argument("uri_or_id")
@click.option("--region", help="Region id, when the image is in several.")
@network_option
@mirror_option
@format_option_with("table")
@click.pass_obj
@errors
def show(
    db: str | None,
    /,
    uri_or_id: str,
    region: str | None,
    network: str | None,
    mirror: str | None,
    fmt: str | None,
) -> None:
    """Show one image, by URI (either registry host form, VPC or public) or ImageId, with its
    labels."""
    info = images.show(uri_or_id, region=region, endpoint=network, mirror=mirror, db=db)
    render_one(info, Format(fmt) if fmt else Format.TABLE, sys.stdout)


def run() -> None:
    """The pai-catalog program. After Ctrl-C or SIGTERM it exits at once: by then the run under
    way was rolled back and its lock released, and the HTTP requests still under way in other
    threads, which the interpreter would otherwise wait for, hold nothing anyone needs."""
    try:
        main(prog_name="pai-catalog")
    except SystemExit as exc:
        if not stopped():
            raise
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.code if isinstance(exc.code, int) else 1)


for command in (
    cli_history.runs,
    cli_history.diff,
    cli_history.history_command,
    cli_history.sql,
    cli_history.export,
    cli_history.publish,
    cli_history.info,
    timeline_command,
    cli_write.import_command,
    cli_write.sync_command,
    cli_write.digests_command,
    cli_write.db_group,
    mirror_group,
):
    main.add_command(command)
db_after_the_command(main)
