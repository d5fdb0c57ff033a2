"""The read pipeline: open a catalog read-only, resolve, list, explain, history, SQL, export."""
