"""``python -m catalog`` runs the pai-catalog command line."""

from catalog.cli import main

main(prog_name="pai-catalog")
