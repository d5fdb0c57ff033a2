"""The row an image is stored as: its API fields, and what its URI and labels mean."""

from __future__ import annotations

import json
from typing import Any

from catalog.parse import tags, versions
from catalog.parse.records import ApiImage


def version_row(image: ApiImage, region: str) -> dict[str, Any]:
    """The image_version columns for one API record: its fields and what they mean."""
    parsed = tags.parse_image(image.uri, {k: v or "" for k, v in image.labels})
    return {
        **image.fields,
        "image_id": image.key,
        "region": region,
        "content_hash": image.content_hash,
        "host": parsed.host,
        "namespace": parsed.namespace,
        "repository": parsed.repository,
        "tag": parsed.tag,
        "digest": parsed.digest,
        "official": parsed.official,
        "framework": parsed.framework,
        "framework_key": parsed.framework.lower() if parsed.framework else None,
        "framework_version": parsed.framework_version,
        "version_key": versions.sort_key(parsed.framework_version),
        "version_class": versions.version_class(parsed.framework_version),
        "accelerator": parsed.accelerator,
        "python_version": parsed.python_version,
        "cuda_version": parsed.cuda_version,
        "os_version": parsed.os_version,
        "components": json.dumps([list(c) for c in parsed.components])
        if parsed.components
        else None,
        "build_suffix": parsed.build_suffix,
        "scopes": ",".join(parsed.scopes) or None,
        "scope_inferred": parsed.scope_inferred,
        "parse_status": parsed.parse_status,
        "parse_reason": parsed.parse_reason,
    }
