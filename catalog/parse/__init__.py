"""Pure parsing: API JSON and image URIs to parsed images, tags and version keys; no I/O."""
