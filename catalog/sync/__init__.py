"""The live API: sign, fetch and check pages, and hand each region's listing to the store."""

# A sync's defaults, declared once for the library and the command line (whose --help shows them).
PAGE_SIZE = 100  # images asked for per page; a server may send fewer
WORKERS = 6  # pages fetched at once after the first
RETRIES = 5  # retries per request after throttling, 5xx or network errors
BACKOFF = 0.5  # seconds before the first retry; doubles each retry, with jitter
TIMEOUT = 30.0  # seconds to wait for each answer

# Asking registries for digests (pai-catalog digests, sync --digests).
DIGEST_LIMIT = 1000  # URIs asked per run at most; the rest wait for the next run
DIGEST_WORKERS = 4  # registry requests at once
DIGEST_RETRIES = 3  # retries per request after throttling, 5xx or network errors
DIGEST_BACKOFF = 0.5  # seconds before the first retry; doubles each retry
DIGEST_TIMEOUT = 30.0  # seconds to wait for each answer
DIGEST_NETWORKS = ("public", "vpc", "as-listed")  # which registry host form is asked
