"""Every write: the schema and its migrations, locks, one transaction per run, publish."""
