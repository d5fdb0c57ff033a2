"""The ``pai-catalog`` command: options, output, and one module per group of commands."""
