"""Migration revisions, one change each."""
