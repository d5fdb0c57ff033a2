"""Pure parsing: API JSON and image URIs to parsed images, tags and version keys; no I/O."""

SCOPES = ("training", "inference", "develop")  # the services an image is for, in the SDK's order
