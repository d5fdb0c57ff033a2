"""Pure parsing: API JSON and image URIs to parsed images, tags and version keys; no I/O."""

SCOPES = ("training", "inference", "develop")  # the services an image is for, in the SDK's order
# What output, export rows, the views and events call the image_version columns that the PAI
# SDK's ImageInfo names otherwise (GmtModifiedTime follows GmtCreateTime); every other column is
# called as it is stored. Migration 0009 gave the views and the stored events these names.
PUBLIC_NAMES = {
    "name": "image_name",
    "uri": "image_uri",
    "framework": "framework_name",
    "accelerator": "accelerator_type",
    "gmt_create_time": "created",
    "gmt_modified_time": "modified",
}
