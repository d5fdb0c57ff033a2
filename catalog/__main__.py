"""``python -m catalog`` runs the pai-catalog command line."""

from catalog.cli import run

run()
