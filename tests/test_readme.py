"""The README's examples run against the shipped catalog as written: its first command, every
`$ pai-catalog` line of its console sessions (the walkthrough's run in bash, in
tests/test_walkthrough.py), and every Python block."""

from __future__ import annotations

import re
import shlex

import pytest
from click.testing import CliRunner

from catalog.cli.main import main
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, re.S | re.M)
# Its sessions start a server, install a crontab and fail on purpose: they run in bash, in
# tests/test_walkthrough.py.
WALKTHROUGH = re.search(r"^## Getting started\n.*?(?=^## )", README, re.S | re.M)


def console_sessions() -> list[list[str]]:
    assert WALKTHROUGH is not None
    rest = README[: WALKTHROUGH.start()] + README[WALKTHROUGH.end() :]
    return [
        [line[2:] for line in body.splitlines() if line.startswith("$ ")]
        for kind, body in re.findall(r"^```(\w+)\n(.*?)^```", rest, re.S | re.M)
        if kind == "console"
    ]


@pytest.fixture(autouse=True)
def _no_region(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAI_CATALOG_REGION", "ALIBABA_CLOUD_REGION_ID", "ALIBABA_CLOUD_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "true")


def run(command: str, env: dict[str, str]) -> None:
    words = shlex.split(command)
    assert words[0] == "pai-catalog", command
    result = CliRunner().invoke(main, words[1:], env=env)
    assert result.exit_code == 0, (command, result.stderr)
    assert result.stdout, command


def test_the_first_command_answers_on_the_shipped_catalog() -> None:
    kind, body = BLOCKS[0]
    assert kind == "sh" and body.startswith("pip install . && pai-catalog ")
    run(body.strip().split(" && ", 1)[1], {})


@pytest.mark.parametrize("session", console_sessions())
def test_every_console_session_runs(session: list[str]) -> None:
    env: dict[str, str] = {}
    for command in session:
        if command.startswith("export "):
            name, _, value = command[len("export ") :].partition("=")
            env[name] = value
        else:
            run(command, env)


@pytest.mark.parametrize(
    "code", [body for kind, body in BLOCKS if kind == "python"], ids=lambda c: c.split("\n")[0]
)
def test_every_python_block_runs(code: str) -> None:
    exec(compile(code, "README.md", "exec"), {})  # the README's own code
