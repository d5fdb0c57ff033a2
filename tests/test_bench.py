"""The benchmark's quick mode runs end to end and reports every metric beside its target."""

from __future__ import annotations

import json
import subprocess
import sys
from numbers import Real

import pytest

from tests.conftest import ROOT

# Slow: run by `python -m pytest -m slow` (CI runs both).
pytestmark = pytest.mark.slow

# Not marked slow or skipped on purpose: CI runs --quick so that the benchmark never rots.
# It takes about 30 s on two cores; the timeout is the 2-minute budget plus headroom.
TIMEOUT = 180


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def test_quick_benchmark_reports_every_metric_against_its_target() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["mode"] == "quick"
    assert report["resolve_answers_match"] is True, report["disagreements"]
    assert report["disagreements"] == []

    metrics = {metric["name"]: metric for metric in report["metrics"]}
    expected = {
        "resolve_growth",
        "resolve_growth_uncached",
        "cold_cli_ratio",
        "crawl_speedup",
        "crawl_speedup_no_verify",
        "crawl_floor_ratio",
        "crawl_floor_ratio_no_verify",
        "noop_rows_written",
        "sync_peak_rss_mb",
        "db_kb_per_image",
    }
    for size in report["sizes"]:
        expected |= {f"warm_resolve_ratio_{size}", f"warm_resolve_uncached_ratio_{size}"}
    assert expected <= set(metrics), sorted(expected - set(metrics))
    for name, metric in metrics.items():
        assert _is_number(metric["value"]), name
        assert _is_number(metric["target"]), name
        assert metric["op"] in ("<=", ">=", "=="), name
        assert isinstance(metric["met"], bool), name
        assert metric["absolute"], name
    assert metrics["noop_rows_written"]["value"] == 0
