"""The shipped catalog database (installed as catalog.data)."""
