"""Alembic migrations for the pai-image-catalog schema (installed as catalog.migrations)."""
