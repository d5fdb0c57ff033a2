"""What every pai-catalog command shares: error mapping, output formats, common options."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from catalog.errors import CatalogError
from catalog.errors import UsageError as CatalogUsageError
from catalog.filters import SCOPES
from catalog.output import Format, render

F = TypeVar("F", bound=Callable[..., Any])


def errors(func: F) -> F:
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


def default_format() -> Format:
    return Format.TABLE if sys.stdout.isatty() else Format.NL


def format_option(func: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice([f.value for f in Format]),
        help="Output format [default: table on a terminal, nl otherwise].",
    )(func)


def filter_options(func: F) -> F:
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
