"""The README's walkthrough runs as written, in bash, in a sandbox: every command in order, with
the exit status and the output the README shows; and the other shell blocks a sandbox can run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.dbkit import CatalogDb
from tests.test_scheduling import installed_command

README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
WALKTHROUGH = "Getting started"
SDK = "alibabacloud_tea_openapi.utils"  # the fake API checks signatures with it
URL = "$FAKE_API_URL"  # what the script reads the fake API's printed URL into

# What no test runs, and why: each changes the machine itself, which no sandbox redirects.
NOT_RUN = {
    r"pip install \S+": "installs into the interpreter that runs this suite, which has the "
    "checkout installed already: its pai-catalog, beside sys.executable, is the one run",
    r"crontab\b.*": "edits the real user's crontab in cron's spool, whatever HOME says",
    r"systemctl --user .*": "enables a timer in the real user's systemd manager",
    r"loginctl .*": "changes the login manager's settings for the real user",
}


@dataclass(frozen=True)
class Command:
    text: str
    shown: tuple[str, ...] = ()  # the output a console block shows; "..." stands for any text

    @property
    def fails(self) -> bool:
        return any(line.startswith("Error: ") for line in self.shown)

    @property
    def not_run(self) -> bool:
        return any(re.fullmatch(pattern, self.text) for pattern in NOT_RUN)


@dataclass(frozen=True)
class Ran:
    command: Command
    status: int
    output: list[str]  # stdout's lines, then stderr's


def section(title: str, level: str = "##") -> str:
    """A section of the README, up to the next heading of its level or above."""
    heading = f"\n{level} {title}\n"
    start = README.index(heading) + len(heading)
    end = re.compile(rf"^#{{2,{len(level)}}} ", re.M).search(README, start)
    return README[start : end.start() if end else None]


def blocks(text: str) -> list[list[Command]]:
    """Each console or sh block's commands: `$ ` lines with the output under them, or lines."""
    found: list[list[Command]] = []
    for kind, body in FENCE.findall(text):
        if kind == "console":
            found.append([])
            for line in body.splitlines():
                if line.startswith("$ "):
                    found[-1].append(Command(line[2:]))
                else:
                    last = found[-1][-1]
                    found[-1][-1] = Command(last.text, (*last.shown, line))
        elif kind == "sh":
            lines = body.replace("\\\n", "").splitlines()
            found.append([Command(x.strip()) for x in lines if x.strip() and x[0] != "#"])
    return found


def machine(root: Path) -> tuple[Path, dict[str, str]]:
    """A working folder, and the environment of a user with a fresh home and this suite's
    pai-catalog and python first on PATH."""
    bin_dir = Path(installed_command()).parent
    if shutil.which("python", path=str(bin_dir)) is None:
        pytest.skip(f"no 'python' beside pai-catalog in {bin_dir}")
    home, work, tmp = root / "home", root / "work", root / "tmp"
    for folder in (home, work, tmp):
        folder.mkdir(parents=True)
    # The XDG folders where they are by default: cron, which sets none, finds the same catalog.
    env = {
        "HOME": str(home),
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }
    return work, env


def clone(root: Path) -> tuple[Path, dict[str, str]]:
    """A machine whose working folder stands for a clone: copies of the folders the README's
    commands read, so that nothing they write lands in the checkout."""
    work, env = machine(root)
    for name in ("scripts", "data"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    return work, env


def script(session: list[Command], log: Path, replace: dict[str, str]) -> tuple[str, str | None]:
    """The session as one bash script, each command's output in files of its own; and the URL
    the README shows for a fake API it starts in the background.

    That fake API gets `--port 0`, and the URL it prints replaces the README's (shown, or made
    of its `--port`) in the later commands."""
    lines, readme_url = [], None
    for i, command in enumerate(session):
        if command.not_run:
            continue
        text = _replace(command.text, replace)
        out, err, rc = (shlex.quote(str(log / f"{i}.{x}")) for x in ("out", "err", "rc"))
        lines.append(f"exec >{out} 2>{err}")
        if "scripts/fake_pai_api.py " in text and text.endswith("&"):
            port = re.search(r"--port (\d+)", text)
            assert port and readme_url is None, text
            readme_url = command.shown[0] if command.shown else f"http://127.0.0.1:{port[1]}"
            replace = {**replace, readme_url: URL}
            lines += [
                text.replace(port[0], "--port 0"),
                f"until [ -s {out} ]; do kill -0 $!; sleep 0.05; done",
                f"read -r {URL[1:]} <{out}",
            ]
        elif command.fails:  # the status it fails with, rather than the end of the script
            lines.append(f'{{ {text}\n}} || echo "$?" >{rc}')
        else:
            lines.append(text)
        lines.append(f"echo {i} >>{shlex.quote(str(log / 'done'))}")
    return "\n".join(lines) + "\n", readme_url


def run_session(
    session: list[Command], work: Path, env: dict[str, str], replace: dict[str, str] | None = None
) -> tuple[list[Ran], bool]:
    """Run the commands in one `bash -e -o pipefail`; return what each did, and whether the
    session left a process running. The shown output names the URL the fake API printed."""
    log = work.parent / "log"
    log.mkdir()
    text, readme_url = script(session, log, replace or {})
    (log / "script").write_text(text)
    bash = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", str(log / "script")],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        status = bash.wait(timeout=300)
    finally:
        left_running = stop_group(bash.pid)
    done = (log / "done").read_text().split() if (log / "done").exists() else []
    ran: list[Ran] = []
    urls: dict[str, str] = {}
    for i, command in enumerate(session):
        if command.not_run:
            continue
        out, err, rc = (log / f"{i}.{x}" for x in ("out", "err", "rc"))
        if str(i) not in done:
            said = err.read_text() if err.exists() else ""
            pytest.fail(f"exit status {status}: {command.text}\n{said}")
        output = out.read_text().splitlines() + err.read_text().splitlines()
        if readme_url and "scripts/fake_pai_api.py " in command.text:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", output[0]), output
            urls[readme_url] = output[0]
        shown = tuple(_replace(line, urls) for line in command.shown)
        exit_status = int(rc.read_text()) if rc.exists() else 0
        ran.append(Ran(Command(command.text, shown), exit_status, output))
    return ran, left_running


def _replace(text: str, replace: dict[str, str]) -> str:
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def stop_group(pgid: int) -> bool:
    """Stop what the session started; whether anything was still running once bash ended."""
    # A fake API sent SIGTERM takes up to its 0.2 s poll to stop.
    if _gone(pgid, within=2.0):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
        if not _gone(pgid, within=2.0):
            os.killpg(pgid, signal.SIGKILL)
    return True


def _gone(pgid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def assert_as_shown(ran: Ran) -> None:
    """Exit 1 where the README shows an error, else 0; every line shown is printed, and no
    other (stdout and stderr together, as a terminal shows them)."""
    assert ran.status == (1 if ran.command.fails else 0), (ran.command.text, ran.output)
    unmatched = list(ran.output)
    for line in ran.command.shown:
        pattern = ".*".join(re.escape(part) for part in line.split("..."))
        hit = next((a for a in unmatched if re.fullmatch(pattern, a)), None)
        assert hit is not None, (ran.command.text, line, ran.output)
        unmatched.remove(hit)
    assert unmatched == [], (ran.command.text, unmatched)


@dataclass(frozen=True)
class Walked:
    work: Path
    env: dict[str, str]
    ran: list[Ran]
    left_running: bool
    air_gapped: list[Command]  # what the README runs on the machine with no network


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Walked:
    """The walkthrough up to the air-gapped machine, once, on a machine of its own."""
    pytest.importorskip(SDK, reason="pip install -e '.[test]'")
    *here, air_gapped = blocks(section(WALKTHROUGH))
    assert air_gapped[0].text.startswith("sha256sum -c ")
    work, env = clone(tmp_path_factory.mktemp("walkthrough") / "networked")
    ran, left_running = run_session([c for block in here for c in block], work, env)
    return Walked(work, env, ran, left_running, air_gapped)


def test_the_walkthrough_runs_as_written(walked: Walked) -> None:
    for ran in walked.ran:
        assert_as_shown(ran)
    assert not walked.left_running, "the walkthrough leaves the fake API running"
    texts = [c.text for block in blocks(section(WALKTHROUGH)) for c in block]
    assert [t for t in texts if t.startswith("pip ")] == ["pip install .", "pip install '.[test]'"]
    # Refused for want of a region, in an environment that gives none.
    [refused] = [r.command.text for r in walked.ran if r.command.fails]
    assert texts.index(refused) < texts.index("export PAI_CATALOG_REGION=cn-hangzhou")
    assert "--region" not in refused and "PAI_CATALOG_REGION" not in walked.env


def crontab_file(walked: Walked) -> Path:
    [sed] = [r.command.text for r in walked.ran if "crontab.example" in r.command.text]
    return walked.work / sed.rsplit("> ", 1)[1]


def test_the_walkthroughs_crontab_line_adds_the_file_it_wrote(walked: Walked) -> None:
    """Not run (NOT_RUN says why): it must add the file the `sed` line wrote after the user's
    own jobs, not in their place."""
    texts = [c.text for block in blocks(section(WALKTHROUGH)) for c in block]
    [line] = [t for t in texts if t.startswith("crontab")]
    assert line == f"crontab -l 2>/dev/null | cat - {crontab_file(walked).name} | crontab -"


def test_the_walkthroughs_crontab_runs_in_crons_environment(walked: Walked) -> None:
    """The job of the file the walkthrough wrote, run as cron runs it: PATH=/usr/bin:/bin, the
    file's variables, credentials from the INI file; only the endpoints are the test's."""
    from tests.test_sync import fake

    variables, jobs = {}, []
    for line in crontab_file(walked).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assignment = re.fullmatch(r"([A-Z_]+)=(.*)", line)
            if assignment:
                variables[assignment[1]] = assignment[2]
            else:
                jobs.append(line.split(None, 5)[5])
    assert jobs == [f"{installed_command()} sync --quiet"]
    home = Path(walked.env["HOME"])
    ini = home / ".alibabacloud" / "credentials.ini"
    ini.parent.mkdir()
    ini.write_text("[default]\ntype = access_key\naccess_key_id = test-ak\n"
                   "access_key_secret = test-secret\n")  # fmt: skip
    ini.chmod(0o600)
    snapshot = fake.load_snapshot(ROOT / "data" / "snapshot")
    regions = variables["PAI_CATALOG_REGIONS"].split()
    with contextlib.ExitStack() as stack:
        apis = [stack.enter_context(fake.FakePaiApi({r: snapshot[r]})) for r in regions]
        cron = {
            "HOME": str(home),
            "LOGNAME": "catalog",
            "SHELL": "/bin/sh",
            "PATH": "/usr/bin:/bin",
        }
        cron.update(variables)
        cron["PAI_CATALOG_ENDPOINT"] = " ".join(f"{a.region}={a.url}" for a in apis)
        done = subprocess.run(
            ["/bin/sh", "-c", jobs[0]], env=cron, capture_output=True, text=True, timeout=120
        )
        listed = {a.region: len(a.listing()) for a in apis}
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")  # quiet: no mail
    # The catalog the walkthrough synced: cron found it with no XDG_DATA_HOME.
    catalog = CatalogDb.file(home / ".local" / "share" / "pai-catalog" / "catalog.db")
    in_catalog = catalog.rows("SELECT region, count(*) FROM v_image GROUP BY region")
    assert in_catalog == sorted(listed.items())
    first, *nightly = catalog.rows("SELECT region, status, added FROM sync_run ORDER BY id")
    assert first == ("cn-hangzhou", "ok", listed["cn-hangzhou"])
    assert sorted(nightly) == [
        ("cn-hangzhou", "ok", 0),
        ("cn-shanghai", "ok", listed["cn-shanghai"]),
    ]


def test_the_published_copy_answers_on_a_machine_of_its_own(walked: Walked, tmp_path: Path) -> None:
    """A fresh home, no credentials, no region, and only the two files the walkthrough copies."""
    [out] = [r.command.text.split()[-1] for r in walked.ran if " publish " in r.command.text]
    work, env = machine(tmp_path / "air-gapped")
    for name in (out, f"{out}.sha256"):
        shutil.copy(walked.work / name, work / name)
    ran, left_running = run_session(walked.air_gapped, work, env)
    assert not left_running
    # `info` prints a table on a terminal and JSON here, so the README shows none of it.
    [info] = [r for r in ran if r.command.text == "pai-catalog info"]
    for each in ran:
        if each is not info:
            assert_as_shown(each)
    assert info.status == 0
    answer = json.loads("\n".join(info.output))
    assert Path(answer["database"]).resolve() == (work / out).resolve()
    assert [r["region"] for r in answer["regions"]] == ["cn-hangzhou"]
    assert answer["images"] == 38 and answer["age_days"] < 1
    assert list(Path(env["HOME"]).iterdir()) == []  # reads write nothing


def test_the_fake_api_block_syncs(tmp_path: Path) -> None:
    """Its fixed port and database path are the two things changed: where the suite runs,
    another run may hold either."""
    pytest.importorskip(SDK, reason="pip install -e '.[test]'")
    [session] = blocks(section("A sync against a local fake API, in three commands", "###"))
    work, env = clone(tmp_path)
    demo = tmp_path / "demo.db"
    ran, _ = run_session(session, work, env, replace={"/tmp/demo.db": str(demo)})
    assert [r.status for r in ran] == [0, 0, 0]
    assert re.fullmatch(r"cn-hangzhou: 38 seen, 38 added, .*", ran[-1].output[0])
    assert CatalogDb.file(demo).rows("SELECT count(*) FROM v_image") == [(38,)]


def test_the_nightly_sync_block_writes_the_files_it_names(tmp_path: Path) -> None:
    """What it writes, it writes for real in the sandbox's home; what would install the job in
    the machine's cron or systemd is not run (NOT_RUN)."""
    [session] = blocks(section("A nightly sync", "###"))
    assert {c.text.split()[0] for c in session if c.not_run} == {"crontab", "systemctl", "loginctl"}
    work, env = clone(tmp_path)
    ran, _ = run_session(session, work, env)
    assert all(r.status == 0 for r in ran)
    pai_catalog = installed_command()
    [crontab] = [r for r in ran if "crontab.example" in r.command.text]
    assert f"17 3 * * * {pai_catalog} sync --quiet" in crontab.output
    config = Path(env["HOME"]) / ".config"
    service = (config / "systemd" / "user" / "pai-catalog-sync.service").read_text()
    assert f"\nExecStart={pai_catalog} sync --quiet\n" in service
    assert "EnvironmentFile=-%h/.config/pai-catalog/sync.env" in service
    assert (config / "systemd" / "user" / "pai-catalog-sync.timer").is_file()
    environment = config / "pai-catalog" / "sync.env"
    assert environment.read_text() == "PAI_CATALOG_REGIONS=cn-hangzhou cn-shanghai\n"
    assert environment.stat().st_mode & 0o777 == 0o600
