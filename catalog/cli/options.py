"""What every pai-catalog command shares: error mapping, output formats, common options."""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click

from catalog.cli.output import Format, render, visible
from catalog.config import (
    INTERFACE,
    ShippedCatalogWarning,
    UnsyncedCatalogWarning,
    state_dir,
)
from catalog.errors import CatalogError, LockedError, Terminated
from catalog.errors import UsageError as CatalogUsageError
from catalog.parse import SCOPES

F = TypeVar("F", bound=Callable[..., Any])


def errors(func: F) -> F:
    """Domain errors become one ``Error: ...`` line: exit 2 for usage, 75 when another writer
    holds the lock, 1 for the rest. So does an interrupt (Ctrl-C, or SIGTERM as
    ``stop_on_sigterm`` turns it): whatever was being written was rolled back. A read that
    the shipped catalog answered says so on stderr: every time when the user's catalog holds
    no successful run yet, once when the user has none. A closed output pipe ends the command
    quietly."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        spelling = INTERFACE.set("cli")  # messages say --region, not region=
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnsyncedCatalogWarning)
            warnings.simplefilter("always", ShippedCatalogWarning)
            try:
                return func(*args, **kwargs)
            except CatalogUsageError as exc:
                raise click.UsageError(visible(str(exc))) from None
            except LockedError as exc:
                raise TryLater(visible(str(exc))) from None
            except BrokenPipeError:
                # The reader stopped reading (list | head -1): not an error. What is still
                # buffered goes nowhere, instead of failing again at exit.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
                return None
            except CatalogError as exc:
                raise click.ClickException(visible(str(exc))) from None
            except KeyboardInterrupt as exc:
                _STOPS.append(exc)
                raise click.ClickException(_stopped(exc)) from None
            finally:
                notes = {str(w.message) for w in caught if w.category is UnsyncedCatalogWarning}
                shipped = {str(w.message) for w in caught if w.category is ShippedCatalogWarning}
                notes |= {note for note in shipped if _first_time(note)}
                for note in sorted(notes):
                    click.echo(f"Note: {visible(note)}", err=True)
                INTERFACE.reset(spelling)

    return wrapper  # type: ignore[return-value]


def _first_time(note: str) -> bool:
    """Whether this note was never said before: a loop of commands says it once. Remembered
    in the state folder; when that cannot be written, the note is said every time."""
    stamp = state_dir() / "notes"
    try:
        said = stamp.read_text(encoding="utf-8").splitlines()
    except OSError:
        said = []
    if note in said:
        return False
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        with open(stamp, "a", encoding="utf-8") as out:
            out.write(note + "\n")
    except OSError:
        pass
    return True


def db_after_the_command(group: click.Group) -> None:
    """Accept --db and --profile after a command's name too (pai-catalog resolve pytorch
    --db x.db), as before it: the value given there wins."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            db_after_the_command(command)
            continue
        if command.callback is None or any(p.name == "db_here" for p in command.params):
            continue
        command.params += [
            click.Option(
                ["--db", "db_here"],
                metavar="PATH_OR_URL",
                help="The catalog database, as the option before the command gives it.",
            ),
            click.Option(
                ["--profile", "profile_here"],
                help="The aliyun CLI profile, as the option before the command gives it.",
            ),
        ]
        command.callback = _db_here(command.callback)


def _db_here(callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def wrapper(
        *args: Any, db_here: str | None = None, profile_here: str | None = None, **kwargs: Any
    ) -> Any:
        if db_here is not None:
            click.get_current_context().obj = db_here
        if profile_here:
            os.environ["ALIBABA_CLOUD_PROFILE"] = profile_here  # read by credentials and region
        return callback(*args, **kwargs)

    return wrapper


class TryLater(click.ClickException):
    """Another writer holds the lock: nothing is wrong, run again later. Exit status 75
    (EX_TEMPFAIL, sysexits.h), so that a timer or cron can tell it from a failure."""

    exit_code = 75


# Interrupts that stopped a command of this process.
_STOPS: list[KeyboardInterrupt] = []


def stopped() -> bool:
    """Whether Ctrl-C or SIGTERM stopped a command of this process."""
    return bool(_STOPS)


def _stopped(exc: KeyboardInterrupt) -> str:
    signal_name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
    what = "Terminated" if isinstance(exc, Terminated) else "Interrupted"
    return f"{what} ({signal_name}); nothing was left half-written."


def stop_on_sigterm(ctx: click.Context) -> None:
    """Make SIGTERM (what systemd and kill send) stop the command as Ctrl-C does: a writer
    rolls back and records why, and the command says so in one line and exits 1. The old
    handler is back when the command ends."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set a handler

    def terminate(_signum: int, _frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


def default_format() -> Format:
    return Format.TABLE if sys.stdout.isatty() else Format.NL


def format_option_with(default: str) -> Callable[[F], F]:
    """--format, with the help saying what the command prints without it."""

    def decorate(func: F) -> F:
        return click.option(
            "--format",
            "fmt",
            type=click.Choice([f.value for f in Format]),
            help=f"Output format [default: {default}].",
        )(func)

    return decorate


format_option = format_option_with("table on a terminal, nl otherwise")


def _filters(as_of: bool) -> list[Callable[[F], F]]:
    options = [
        click.option(
            "--accelerator",
            help="CPU, GPU or another chip type (any case); any: every image, those with no "
            "accelerator too.",
        ),
        click.option(
            "--scope",
            type=click.Choice([*SCOPES, "any"], case_sensitive=False),
            help="training (DLC), inference (EAS) or develop (DSW); any: every image, those "
            "with no scope too.",
        ),
        click.option("--region", help="Region id, such as cn-hangzhou."),
        click.option("--python", "python_version", help="Python version: 3.10 or py310."),
        click.option("--cuda", "cuda_version", help="CUDA version: 12.1 or cu121."),
        click.option("--os", "os_name", help="OS, or its prefix: ubuntu22.04, ubuntu."),
    ]
    if as_of:
        options.append(
            click.option(
                "--as-of", help="Answer as the catalog stood at this ISO 8601 date or time."
            )
        )
    return options


def filter_options(func: F) -> F:
    for option in reversed(_filters(as_of=True)):
        func = option(func)
    return func


def live_filter_options(func: F) -> F:
    """The filters of the images live now: no --as-of."""
    for option in reversed(_filters(as_of=False)):
        func = option(func)
    return func


def mirror_option(func: F) -> F:
    """--mirror PREFIX: the mirror registry a cluster pulls from, passed on as ``mirror``."""
    return click.option(
        "--mirror",
        metavar="PREFIX",
        help="Also give each image's URI behind this mirror registry (host[:port][/path]): the "
        "registry host replaced, namespace/repository:tag kept [env: PAI_CATALOG_MIRROR].",
    )(func)


def platform_option(func: F) -> F:
    """--platform OS/ARCH[/VARIANT]: only images their registry said run on it."""
    return click.option(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="Only images whose registry said they run on this platform (linux/arm64 takes "
        "any arm64 variant); pai-catalog digests asks.",
    )(func)


def network_option(func: F) -> F:
    """--vpc / --public: the registry host form the user can pull from, passed on as
    ``network`` ("vpc", "public" or None); both at once is a usage error."""

    @functools.wraps(func)
    def wrapper(*args: Any, vpc: bool = False, public: bool = False, **kwargs: Any) -> Any:
        if vpc and public:
            raise click.UsageError("--vpc and --public disagree; give one of them.")
        kwargs["network"] = "vpc" if vpc else "public" if public else None
        return func(*args, **kwargs)

    wrapper = click.option(
        "--public",
        is_flag=True,
        help="Print URIs with the public registry host (dsw-registry.REGION...), pullable "
        "from anywhere.",
    )(wrapper)
    return click.option(  # type: ignore[return-value]
        "--vpc",
        is_flag=True,
        help="Print URIs with the VPC registry host (dsw-registry-vpc.REGION...), pullable "
        "from inside an Alibaba Cloud VPC. Without either, URIs are as the API lists them.",
    )(wrapper)


def render_rows(rows: Any, fmt: str | None, table_columns: tuple[str, ...]) -> None:
    """Rows in the chosen format; tables and CSV show ``table_columns`` only."""
    chosen = Format(fmt) if fmt else default_format()
    columns = table_columns if chosen in (Format.TABLE, Format.CSV) else None
    render(rows, chosen, sys.stdout, columns)


def configure_logging(level: str) -> None:
    """Send the catalog's own log records to stderr; other libraries stay quiet."""
    logger = logging.getLogger("catalog")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
