"""Commands that write: import, sync and the db group."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from catalog.cli.options import errors, live_filter_options
from catalog.cli.output import Format, render
from catalog.sync import (
    BACKOFF,
    DIGEST_LIMIT,
    DIGEST_NETWORKS,
    DIGEST_RETRIES,
    DIGEST_TIMEOUT,
    DIGEST_WORKERS,
    PAGE_SIZE,
    RETRIES,
    TIMEOUT,
    WORKERS,
)

if TYPE_CHECKING:
    from catalog.sync.digests import DigestResult
    from catalog.sync.run import RegionResult


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--region", required=True, help="The region these listings are of.")
@click.option(
    "--allow-mass-removal", is_flag=True, help="Store it even if it removes over 20% of images."
)
@click.option(
    "--allow-mass-change",
    is_flag=True,
    help="Store it even if it changes the official flag, scopes or accelerator of over 20% "
    "of images.",
)
@click.option("--wait", is_flag=True, help="Wait for another writer instead of exiting.")
@click.pass_obj
@errors
def import_command(db: str | None, /, files: tuple[Path, ...], region: str, **opts: bool) -> None:
    """Import ListImages response bodies (all pages of one listing) as one run of REGION.

    Images the files no longer list are marked removed, as a sync would. A FILE of - reads
    standard input. A listing whose registry hosts all name another region is refused.
    """
    from catalog.sync.run import import_files

    stats = import_files(files, region, db_option=db, **opts)
    click.echo(
        f"{stats.region}: {stats.seen} seen, {stats.added} added, {stats.changed} changed, "
        f"{stats.removed} removed, {stats.restored} restored (run {stats.run_id})",
        err=True,
    )


@click.command("sync")
@click.option(
    "--region",
    "regions",
    multiple=True,
    envvar="PAI_CATALOG_REGIONS",
    help="Region to sync; repeat for several [env: PAI_CATALOG_REGIONS; default: the region "
    "PAI_CATALOG_REGION, ALIBABA_CLOUD_REGION_ID or the aliyun CLI profile names, else the "
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
    default=PAGE_SIZE,
    show_default=True,
    help="Images asked for per page (a server may send fewer).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=WORKERS,
    show_default=True,
    help="Pages fetched at once after the first.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=RETRIES,
    show_default=True,
    help="Retries per request after throttling, 5xx or network errors.",
)
@click.option(
    "--backoff",
    type=click.FloatRange(0, 60),
    default=BACKOFF,
    show_default=True,
    help="First retry delay in seconds; doubles each retry, with jitter.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=TIMEOUT,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Read the listing a second time (which images only) to catch images shifted "
    "between pages.",
)
@click.option(
    "--allow-mass-removal",
    is_flag=True,
    help="Store a listing even if it removes over 20% (and over 5) of a region's images.",
)
@click.option(
    "--allow-mass-change",
    is_flag=True,
    help="Store a listing even if it changes the official flag, scopes or accelerator of over "
    "20% (and over 5) of a region's images.",
)
@click.option("--wait", is_flag=True, help="Wait for another writer instead of exiting.")
@click.option(
    "--digests",
    "with_digests",
    is_flag=True,
    help="Then ask the registries what the tags of the synced regions' images without a "
    "digest point at (pai-catalog digests, with its defaults); a registry that cannot be "
    "reached is reported, never a failed sync.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("--quiet", "-q", is_flag=True, help="Print failures only.")
@click.pass_obj
@errors
def sync_command(
    db: str | None, /, as_json: bool, quiet: bool, with_digests: bool, **opts: Any
) -> None:
    """Crawl PAI's ListImages API into the catalog, one transaction per region.

    Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET
    (and ALIBABA_CLOUD_SECURITY_TOKEN), ~/.aliyun/config.json, ~/.alibabacloud/credentials.ini,
    or the ECS RAM role. Exit status 1 if any region failed, 75 if another writer holds the
    lock.
    """
    from catalog.sync.run import sync, sync_options

    progress = _progress_line if sys.stderr.isatty() and not (quiet or as_json) else None
    results = sync(sync_options(**opts), db_option=db, progress=progress)
    if progress is not None:
        click.echo("\r\033[K", nl=False, err=True)
    found = None
    synced = [result.region for result in results if result.ok]
    if with_digests and synced:
        from catalog.sync.digests import digests_for

        found = digests_for(regions=synced, db_option=db)
    if as_json:
        rows = [{**asdict(r), "seconds": round(r.seconds, 3)} for r in results]
        if with_digests:  # one JSON object: the regions' list, and what digests did
            click.echo(json.dumps({"regions": rows, "digests": _digest_rows(found)}, indent=2))
        else:
            render(rows, Format.JSON, sys.stdout)
    for result in results:
        if not as_json and (not quiet or not result.ok):
            click.echo(_summary(result), err=not result.ok)
    if found is not None and not as_json:
        _digest_report(found, quiet)
    if not all(result.ok for result in results):
        sys.exit(1)


def _digest_rows(found: DigestResult | None) -> Any:
    if found is None:
        return None
    return {
        "runs": [
            {**asdict(run), "failures": [list(f) for f in run.failures]} for run in found.runs
        ],
        "selected": found.selected,
        "due": found.candidates,
        "left": found.left,
    }


def _digest_report(found: DigestResult, quiet: bool) -> None:
    """One line per region's digests run on stderr, then what could not be asked."""
    for run in found.runs:
        if not quiet or run.failures:
            click.echo(
                f"{run.region}: digests: {run.answered} of {run.asked} answered, {run.added} new, "
                f"{run.moved} moved (run {run.run_id})",
                err=True,
            )
    failures = found.failures
    for uri, why in failures[:10]:
        click.echo(f"  not answered: {uri}: {why}", err=True)
    if len(failures) > 10:
        click.echo(
            f"  ... and {len(failures) - 10} more (pai-catalog runs shows each run)", err=True
        )
    if found.left:
        click.echo(
            f"{found.left} of {found.candidates} images due were left for the next run (--limit).",
            err=True,
        )
    if not found.runs and not quiet:
        why = (
            "every selected image has a digest (--recheck asks again)"
            if found.selected
            else "no live image matches the filters"
        )
        click.echo(f"digests: nothing to ask; {why}", err=True)


@click.command("digests")
@click.argument("framework", required=False)
@click.option("--version", "version", help="A version, prefix or range to match.")
@live_filter_options
@click.option(
    "--recheck",
    is_flag=True,
    help="Ask again for images that have a digest (those never asked first, then the longest "
    "unchecked), to notice tags that moved.",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=DIGEST_LIMIT,
    show_default=True,
    help="Images asked at most in this run; the rest wait for the next.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=DIGEST_WORKERS,
    show_default=True,
    help="Registry requests at once.",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 20),
    default=DIGEST_RETRIES,
    show_default=True,
    help="Retries per request after throttling (429), 5xx or network errors.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=DIGEST_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@click.option(
    "--network",
    type=click.Choice(DIGEST_NETWORKS),
    default="public",
    show_default=True,
    help="Which registry host to ask: public (dsw-registry.REGION...), vpc "
    "(dsw-registry-vpc.REGION..., from inside an Alibaba Cloud VPC), or the URI as listed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("--quiet", "-q", is_flag=True, help="Print failures only.")
@click.pass_obj
@errors
def digests_command(
    db: str | None, /, framework: str | None, version: str | None, as_json: bool, quiet: bool,
    recheck: bool, limit: int, workers: int, retries: int, timeout: float, network: str,
    **filters: Any,
) -> None:  # fmt: skip
    """Ask the registries what the tags of the selected images point at, and store it: the
    manifest digest (which resolve --pin answers), its media type, and the platforms it runs on
    (resolve --platform). Selects as list does: FRAMEWORK (or every framework), every scope
    unless --scope narrows it; by default only images without a digest.

    Each registry's bearer-token challenge is answered anonymously, or with the credentials
    docker login keeps in ~/.docker/config.json for that registry. A tag that moved to another
    digest is a changed event in history. Images a registry would not answer for are reported,
    and what was answered is stored; exit status 1 if no registry answered at all (a registry
    saying it has no such image is an answer).
    """
    from catalog.sync.digests import DigestOptions, digests_for

    options = DigestOptions(
        recheck=recheck, limit=limit, workers=workers, retries=retries, timeout=timeout,
        network=network,
    )  # fmt: skip
    progress = _digest_progress if sys.stderr.isatty() and not (quiet or as_json) else None
    found = digests_for(
        framework, framework_version=version, image_scope=filters["scope"],
        accelerator_type=filters["accelerator"], regions=[filters["region"]],
        python_version=filters["python_version"], cuda_version=filters["cuda_version"],
        os=filters["os_name"], options=options, db_option=db, progress=progress,
    )  # fmt: skip
    if progress is not None:
        click.echo("\r\033[K", nl=False, err=True)
    if as_json:
        click.echo(json.dumps(_digest_rows(found), indent=2))
    else:
        _digest_report(found, quiet)
    if found.nothing_answered:
        sys.exit(1)


def _digest_progress(done: int, planned: int) -> None:
    click.echo(f"\r\033[Kdigests: {done}/{planned}", nl=False, err=True)


def _summary(result: RegionResult) -> str:
    if not result.ok:
        return f"{result.region}: failed after {result.seconds:.1f} s: {result.error}"
    return (
        f"{result.region}: {result.seen} seen, {result.added} added, {result.changed} changed, "
        f"{result.removed} removed, {result.pages} pages, {result.seconds:.1f} s"
    )


def _progress_line(region: str, done: int, planned: int) -> None:
    click.echo(f"\r\033[K{region}: page {done}/{planned}", nl=False, err=True)


@click.group("db")
def db_group() -> None:
    """The catalog's database: create, upgrade or check its schema, read it again, install a
    published copy, forget a region."""


@db_group.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option("--wait", is_flag=True, help="Wait for another writer instead of exiting.")
@click.pass_obj
@errors
def upgrade(db: str | None, /, revision: str, wait: bool) -> None:
    """Create the database or migrate it to REVISION."""
    from catalog.store.schema import upgrade_catalog

    done = upgrade_catalog(db, revision, wait=wait)
    if done.before == done.revision:
        click.echo(f"{done.database}: already at revision {done.revision}")
    else:
        was = done.before or "an empty database"
        click.echo(f"{done.database}: upgraded from {was} to revision {done.revision}")


@db_group.command()
@click.pass_obj
@errors
def current(db: str | None, /) -> None:
    """Print the database's schema revision and the code's head."""
    from catalog.store.schema import schema_state

    state = schema_state(db)
    where = "at head" if state.revision == state.head else f"head is {state.head}"
    click.echo(f"{state.database}: revision {state.revision or 'none'} ({where})")


@db_group.command()
@click.option("--wait", is_flag=True, help="Wait for another writer instead of exiting.")
@click.pass_obj
@errors
def reparse(db: str | None, /, wait: bool) -> None:
    """Read every stored image again with this version's parsing rules.

    Run it after upgrading pai-catalog: rows keep what older rules read until then. Only
    derived fields (framework, version, accelerator, scopes...) change; history stays.
    """
    from catalog.store.reparse import reparse as reparse_catalog

    done = reparse_catalog(db, wait=wait)
    click.echo(
        f"{done.database}: {done.changed} of {done.total} image versions read differently "
        "and updated"
    )


@db_group.command()
@click.pass_obj
@errors
def check(db: str | None, /) -> None:
    """Exit 1 unless the database is at head and matches the models."""
    from catalog.store.schema import check_catalog

    state = check_catalog(db)
    click.echo(f"{state.database}: revision {state.revision}, schema matches the models")


@db_group.command("install")
@click.argument("file", required=False)
@click.option("--no-verify", is_flag=True, help="Install without checking FILE.sha256.")
@click.option("--allow-older", is_flag=True, help="Install a catalog older than the one in place.")
@click.option("--rollback", is_flag=True, help="Put back the catalog the last install replaced.")
@click.option("--wait", is_flag=True, help="Wait for another writer instead of exiting.")
@click.pass_obj
@errors
def install_command(
    db: str | None, /, file: str | None, no_verify: bool, allow_older: bool, rollback: bool,
    wait: bool,
) -> None:  # fmt: skip
    """Put a published catalog FILE in place of the catalog (or --db), the receiving end of
    publish on an air-gapped machine.

    FILE must match FILE.sha256 (publish writes both), pass SQLite's integrity check and be a
    pai-catalog database whose schema matches its revision; an older schema is upgraded on a
    copy, a newer one refused. A FILE older than the catalog in place (a region's last
    successful sync), or lacking one of its regions, is refused unless --allow-older; so is a
    catalog in place that is not a pai-catalog database. Readers see the old catalog or the new
    one; the old one is kept as CATALOG.previous, which --rollback puts back.
    """
    from catalog.parse import times
    from catalog.store import install

    if rollback:
        if file is not None:
            raise click.UsageError("Give a FILE to install, or --rollback, not both.")
        done = install.rollback(db_option=db, wait=wait)
        click.echo(f"{done.database}: rolled back to {done.source} ({done.images} images)")
    else:
        if file is None or not file.strip():
            raise click.UsageError("Give the published catalog FILE to install.")
        done = install.install(
            file, db_option=db, verify=not no_verify, allow_older=allow_older, wait=wait
        )
        if no_verify:
            click.echo(f"Warning: installed {file} without checking its checksum.", err=True)
        if done.unchanged:
            click.echo(f"{done.database}: {done.source} is installed already; nothing changed")
            return
        upgraded = f", upgraded from {done.upgraded_from}" if done.upgraded_from else ""
        kept = f"; the catalog it replaced is {done.backup}" if done.backup else ""
        click.echo(
            f"{done.database}: installed {done.source} ({done.images} images, schema revision "
            f"{done.revision}{upgraded}){kept}"
        )
    for change in done.changes:
        before, after = times.iso(change.last_sync_before), times.iso(change.last_sync_after)
        click.echo(
            f"  {change.region}: {change.added} added, {change.removed} removed; last sync "
            f"{before or 'none'} -> {after or 'none'}"
        )


@db_group.command("forget-region")
@click.argument("region")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before forgetting.")
@click.option("--wait", is_flag=True, help="Wait for another writer instead of exiting.")
@click.pass_obj
@errors
def forget_region(db: str | None, /, region: str, yes: bool, wait: bool) -> None:
    """Delete REGION from the catalog with its whole history: images, versions, events and
    runs (a region imported by mistake, say). Asks first, unless --yes."""
    from catalog.store.reparse import forget_region as forget

    def ask(region: str, images: int) -> bool:
        question = f"Forget {region}: {images} images and every run and event of it?"
        return yes or click.confirm(question, abort=True)

    done = forget(region, db, wait=wait, ask=ask)
    if done is not None:
        click.echo(
            f"{done.database}: forgot {done.region}, its {done.images} images and their history"
        )
