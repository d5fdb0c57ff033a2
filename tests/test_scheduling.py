"""The cron and systemd files run as shipped, once their one path is set as the README says,
and a scheduler can tell "try later" from "broken" (issue 14)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from catalog.cli.main import main
from tests.conftest import ROOT
from tests.dbkit import CatalogDb
from tests.test_sync import fake
from tests.test_sync_cli import ENV

CRON = ROOT / "scripts" / "cron"
PLACEHOLDER = "/usr/local/bin/pai-catalog"


def installed_command() -> str:
    """What `command -v pai-catalog` prints where this suite runs: the script beside the
    interpreter that runs the tests."""
    found = shutil.which("pai-catalog", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("pai-catalog is not installed beside this interpreter")
    return found


def crontab() -> tuple[dict[str, str], str]:
    """The shipped crontab's variables and its one job's command, with the path set."""
    variables, jobs = {}, []
    for line in (CRON / "crontab.example").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if assignment and not line[0].isdigit() and line[0] != "*":
            variables[assignment[1]] = assignment[2]
        else:
            jobs.append(line.split(None, 5)[5])
    [job] = jobs
    assert PLACEHOLDER in job
    return variables, job.replace(PLACEHOLDER, installed_command())


def test_the_crontab_line_runs_in_crons_environment(tmp_path: Path) -> None:
    """Before: a bare `pai-catalog`, which cron's PATH (/usr/bin:/bin) does not find in a
    virtualenv or ~/.local/bin."""
    variables, command = crontab()
    regions = variables["PAI_CATALOG_REGIONS"].split()
    home = tmp_path / "home"
    (home / ".alibabacloud").mkdir(parents=True)
    ini = home / ".alibabacloud" / "credentials.ini"
    ini.write_text("[default]\ntype = access_key\naccess_key_id = test-ak\n"
                   "access_key_secret = test-secret\n")  # fmt: skip
    ini.chmod(0o600)
    apis = [fake.FakePaiApi({r: fake.synthetic_images(7, r)}) for r in regions]
    for api in apis:
        api.__enter__()
    try:
        # What cron gives a job, then the crontab's own variables; only the endpoints are the
        # test's: the fake API on 127.0.0.1 in place of the live one.
        env = {"HOME": str(home), "LOGNAME": "catalog", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
        env.update(variables)
        env["PAI_CATALOG_ENDPOINT"] = " ".join(
            f"{r}={api.url}" for r, api in zip(regions, apis, strict=True)
        )
        done = subprocess.run(
            ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        for api in apis:
            api.__exit__(None, None, None)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")  # quiet: no mail
    catalog = CatalogDb.file(home / ".local" / "share" / "pai-catalog" / "catalog.db")
    assert catalog.rows("SELECT region, count(*) FROM v_image GROUP BY region") == [
        (r, 7) for r in sorted(regions)
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("mode", ["--user", "--system"])
def test_the_systemd_units_verify_once_the_path_is_set(tmp_path: Path, mode: str) -> None:
    """Before: systemd-analyze verify failed on the bare `pai-catalog` in ExecStart."""
    unit = (CRON / "pai-catalog-sync.service").read_text()
    assert f"ExecStart={PLACEHOLDER} " in unit
    assert "EnvironmentFile=-" in unit and "SuccessExitStatus=75" in unit
    folder = tmp_path / "units"
    folder.mkdir()
    (folder / "pai-catalog-sync.service").write_text(unit.replace(PLACEHOLDER, installed_command()))
    shutil.copy(CRON / "pai-catalog-sync.timer", folder)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "warning"}
    done = subprocess.run(
        ["systemd-analyze", mode, "verify", *sorted(str(p) for p in folder.iterdir())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pai-catalog-sync" not in done.stderr, done.stderr


@pytest.mark.parametrize("quiet", [[], ["--quiet"]], ids=["plain", "quiet"])
def test_a_failed_region_says_its_error_once(sqlite_path: Path, quiet: list[str]) -> None:
    """It said it as a log line, then again as the summary."""
    with fake.FakePaiApi({"cn-hangzhou": fake.synthetic_images(3, "cn-hangzhou")}) as api:
        api.faults.always_error = "InternalError"
        args = ["--db", str(sqlite_path), "sync", "--region", "cn-hangzhou",
                "--endpoint", api.url, "--retries", "0", *quiet]  # fmt: skip
        result = CliRunner().invoke(main, args, env=ENV)
    assert result.exit_code == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("cn-hangzhou: failed after ") and "InternalError" in line


@pytest.mark.parametrize("drift", [False, True], ids=["steady", "moving"])
def test_the_progress_line_counts_what_the_summary_counts(sqlite_path: Path, drift: bool) -> None:
    """The summary said "4 pages" where the progress line had shown "46/40"."""
    from catalog.sync.run import sync
    from tests.test_sync import CREDS, REGION, options

    shown: list[tuple[int, int]] = []
    with fake.FakePaiApi({REGION: fake.synthetic_images(95, REGION)}) as api:
        if drift:  # a second crawl: pages of every pass count
            api.faults.drift_after, api.faults.drift_insert = 3, 2
        [result] = sync(
            options(api, page_size=10),
            db_option=str(sqlite_path),
            credentials=CREDS,
            progress=lambda region, done, planned: shown.append((done, planned)),
        )
    assert result.ok, result.error
    assert all(done <= planned for done, planned in shown), shown
    assert shown[-1] == (result.pages, result.pages)
    assert [done for done, _ in shown] == sorted(done for done, _ in shown)
