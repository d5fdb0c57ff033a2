"""``python -m catalog`` runs the pai-catalog command line."""

from catalog.cli.main import run

run()
