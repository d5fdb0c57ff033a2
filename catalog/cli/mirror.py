"""The mirror group: plan what to copy into a mirror registry."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from catalog.cli.options import errors, filter_options, network_option
from catalog.parse.uri import parse_uri

if TYPE_CHECKING:
    from catalog.read.mirror import Copy

FORMATS = ("skopeo", "skopeo-sync", "json")


@click.group("mirror")
def mirror_group() -> None:
    """Plan copies of the catalog's images into a mirror registry."""


@mirror_group.command("plan")
@click.argument("framework", required=False)
@click.option("--to", "prefix", required=True, metavar="PREFIX",
              help="The mirror registry: host[:port][/path].")  # fmt: skip
@filter_options
@click.option("--latest", type=click.IntRange(1), help="Only each framework's N highest versions.")
@click.option("--since", type=click.IntRange(0), metavar="RUN",
              help="Only images a run after RUN added or changed (pai-catalog runs).")  # fmt: skip
@click.option("--namespace", help="Only images of this namespace (pai, for pai/pytorch:...).")
@network_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="skopeo", show_default=True,
              help="skopeo copy lines, a skopeo sync YAML source file, or JSON pairs.")  # fmt: skip
@click.pass_obj
@errors
def plan_command(
    db: str | None, /, framework: str | None, prefix: str, latest: int | None,
    since: int | None, namespace: str | None, network: str | None, fmt: str, **filters: Any,
) -> None:  # fmt: skip
    """Print what to copy so that a registry at PREFIX mirrors the images of FRAMEWORK (or
    every framework) that the filters select, every scope unless --scope narrows it: each
    image's registry host is replaced by PREFIX and its namespace/repository:tag kept, as
    --mirror answers. An image listed under several regions' hosts is copied once.

    With --format skopeo-sync, run the YAML with `skopeo sync --src yaml --dest docker FILE
    PREFIX/NAMESPACE` (its first line says so); skopeo sync puts a file's images under one
    path, so such a plan holds one namespace (--namespace picks it; --format skopeo has no
    such limit).

    Where pai-catalog digests learned what a tag points at, the copy is pinned: skopeo copies
    that digest (and keeps it, --preserve-digests), so that resolve --mirror --pin answers an
    image the mirror holds; the skopeo-sync file lists the digest beside the tag.
    """
    from catalog.read.mirror import plan

    copies = plan(
        prefix, framework, image_scope=filters["scope"], accelerator_type=filters["accelerator"],
        region=filters["region"], python_version=filters["python_version"],
        cuda_version=filters["cuda_version"], os=filters["os_name"], as_of=filters["as_of"],
        latest=latest, since=since, endpoint=network, db=db,
    )  # fmt: skip
    if namespace is not None:
        copies = [c for c in copies if (c.namespace or "") == namespace.strip().strip("/")]
    if not copies and fmt == "skopeo-sync":
        raise click.ClickException("Nothing matches: no image to mirror, and no file to write.")
    if fmt == "json":
        json.dump([asdict(c) for c in copies], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif fmt == "skopeo":
        for c in copies:
            keep = " --preserve-digests" if c.digest else ""  # what --pin answers must exist
            click.echo(f"skopeo copy --all{keep} docker://{c.source} docker://{_tagged(c.target)}")
    else:
        click.echo(_sync_yaml(copies, prefix.strip().rstrip("/")), nl=False)


def _tagged(uri: str) -> str:
    """A destination with its tag and no digest (a registry names what it stores by tag)."""
    return uri.partition("@")[0] if parse_uri(uri).tag else uri


def _sync_yaml(copies: list[Copy], prefix: str) -> str:
    """A skopeo sync source file: registry host -> images -> namespace/repository -> tags."""
    namespaces = sorted({c.namespace or "" for c in copies})
    if len(namespaces) > 1:
        raise click.UsageError(
            f"The plan holds {len(namespaces)} namespaces ({', '.join(namespaces)}), and skopeo "
            "sync puts every image of one file under one path; give --namespace (one file each), "
            "or use --format skopeo."
        )
    where = f"{prefix}/{namespaces[0]}" if namespaces and namespaces[0] else prefix
    registries: dict[str, dict[str, list[str]]] = {}
    for c in copies:
        host = c.source.split("/", 1)[0]
        name = f"{c.namespace}/{c.repository}" if c.namespace else str(c.repository)
        # The tag, so that the mirror has the name --mirror answers, and the digest where known,
        # so that it has what resolve --pin answers even if the tag moves before the copy.
        references = registries.setdefault(host, {}).setdefault(name, [])
        references += [ref for ref in (c.tag, c.digest) if ref and ref not in references]
    keep = " --preserve-digests" if any(c.digest for c in copies) else ""
    lines = [f"# skopeo sync --src yaml --dest docker{keep} THIS_FILE {where}"]
    for host, repositories in registries.items():
        lines += [f"{json.dumps(host)}:", "  images:"]  # quoted: a name may read as a number
        for name, tags in repositories.items():
            lines.append(f"    {json.dumps(name)}:")
            lines += [f"      - {json.dumps(tag)}" for tag in tags]  # quoted: 2.1 is no number
    return "\n".join(lines) + "\n"
