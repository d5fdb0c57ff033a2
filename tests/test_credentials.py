"""Credentials chain: each source in a tmp HOME with a dict environment, ECS against loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from catalog.account import Credentials, resolve_credentials
from catalog.errors import CredentialsError

SECRET = "s3cr3t-Value-9f8e"
TOKEN = "sts/Token+with=specials"
ROLES = "/latest/meta-data/ram/security-credentials/"
NOTHING = (
    "No Alibaba Cloud credentials found; set ALIBABA_CLOUD_ACCESS_KEY_ID and "
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET, or add a profile to ~/.aliyun/config.json or "
    "~/.alibabacloud/credentials.ini."
)
NO_ECS = {"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}


@pytest.fixture(autouse=True)
def _never_the_real_metadata_service(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail loudly instead of reaching 100.100.100.200; record what would have been asked."""
    asked: list[str] = []
    real = requests.Session.request

    def guarded(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        if "100.100.100.200" in url:
            asked.append(url)
            raise requests.ConnectionError("the test suite never contacts the metadata service")
        return real(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", guarded)
    return asked


def resolve(home: Path, **environ: str) -> Credentials:
    return resolve_credentials(environ={**NO_ECS, **environ}, home=home)


def failure(home: Path, **environ: str) -> str:
    with pytest.raises(CredentialsError) as caught:
        resolve(home, **environ)
    message = str(caught.value)
    assert SECRET not in message
    assert TOKEN not in message
    return message


def write_cli(home: Path, profiles: list[dict[str, Any]], current: str = "default") -> None:
    path = home / ".aliyun" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"current": current, "profiles": profiles}), encoding="utf-8")


def ak(name: str, key_id: str = "cli-id", **extra: str) -> dict[str, str]:
    return {
        "name": name,
        "mode": "AK",
        "access_key_id": key_id,
        "access_key_secret": SECRET,
        **extra,
    }


def write_ini(home: Path, text: str, relative: str = ".alibabacloud/credentials.ini") -> Path:
    path = home / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


INI = f"""[default]
type = access_key
access_key_id = ini-id
access_key_secret = {SECRET}

[other]
type = access_key  # inline comments are allowed
access_key_id = other-id
access_key_secret = {SECRET}
"""


# Environment


def test_environment(tmp_path: Path) -> None:
    found = resolve(
        tmp_path, ALIBABA_CLOUD_ACCESS_KEY_ID="env-id", ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET
    )
    assert found == Credentials("env-id", SECRET, None, "environment")


def test_environment_with_token(tmp_path: Path) -> None:
    found = resolve(
        tmp_path,
        ALIBABA_CLOUD_ACCESS_KEY_ID="env-id",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET,
        ALIBABA_CLOUD_SECURITY_TOKEN=TOKEN,
    )
    assert found == Credentials("env-id", SECRET, TOKEN, "environment")


def test_environment_id_without_secret(tmp_path: Path) -> None:
    assert failure(tmp_path, ALIBABA_CLOUD_ACCESS_KEY_ID="env-id") == (
        "ALIBABA_CLOUD_ACCESS_KEY_ID is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not; "
        "set both or neither."
    )


def test_environment_secret_without_id(tmp_path: Path) -> None:
    assert failure(tmp_path, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET) == (
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not; "
        "set both or neither."
    )


def test_environment_beats_both_files(tmp_path: Path) -> None:
    write_cli(tmp_path, [ak("default")])
    write_ini(tmp_path, INI)
    found = resolve(
        tmp_path, ALIBABA_CLOUD_ACCESS_KEY_ID="env-id", ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET
    )
    assert found.source == "environment"


# ~/.aliyun/config.json


def test_cli_current_profile(tmp_path: Path) -> None:
    write_cli(tmp_path, [ak("default"), ak("work", "work-id")], current="work")
    assert resolve(tmp_path) == Credentials(
        "work-id", SECRET, None, "~/.aliyun/config.json (profile 'work')"
    )


def test_cli_profile_chosen_by_environment(tmp_path: Path) -> None:
    write_cli(tmp_path, [ak("default"), ak("work", "work-id")], current="default")
    found = resolve(tmp_path, ALIBABA_CLOUD_PROFILE="work")
    assert (found.access_key_id, found.source) == (
        "work-id",
        "~/.aliyun/config.json (profile 'work')",
    )


def test_cli_sts_token_mode(tmp_path: Path) -> None:
    write_cli(tmp_path, [{**ak("default", "sts-id"), "mode": "StsToken", "sts_token": TOKEN}])
    assert resolve(tmp_path) == Credentials(
        "sts-id", SECRET, TOKEN, "~/.aliyun/config.json (profile 'default')"
    )


def test_cli_beats_ini(tmp_path: Path) -> None:
    write_cli(tmp_path, [ak("default")])
    write_ini(tmp_path, INI)
    assert resolve(tmp_path).access_key_id == "cli-id"


def test_cli_disabled_falls_to_ini(tmp_path: Path) -> None:
    write_cli(tmp_path, [ak("default")])
    write_ini(tmp_path, INI)
    found = resolve(tmp_path, ALIBABA_CLOUD_CLI_PROFILE_DISABLED="TRUE")
    assert found.source == "~/.alibabacloud/credentials.ini (profile 'default')"


def test_cli_without_current_is_skipped(tmp_path: Path) -> None:
    write_cli(tmp_path, [], current="")
    assert failure(tmp_path) == NOTHING


def test_cli_unsupported_mode(tmp_path: Path) -> None:
    write_cli(tmp_path, [{**ak("default"), "mode": "RamRoleArn"}])
    assert failure(tmp_path) == (
        "~/.aliyun/config.json (profile 'default') has mode 'RamRoleArn', which pai-catalog "
        "does not support; use an AK or StsToken profile, or set ALIBABA_CLOUD_ACCESS_KEY_ID "
        "and ALIBABA_CLOUD_ACCESS_KEY_SECRET."
    )


def test_cli_missing_key(tmp_path: Path) -> None:
    write_cli(tmp_path, [{"name": "default", "mode": "AK", "access_key_secret": SECRET}])
    assert failure(tmp_path) == (
        "~/.aliyun/config.json (profile 'default') has no access_key_id; add it."
    )


def test_cli_sts_mode_without_token(tmp_path: Path) -> None:
    write_cli(tmp_path, [{**ak("default"), "mode": "StsToken"}])
    assert failure(tmp_path) == (
        "~/.aliyun/config.json (profile 'default') has no sts_token; add it."
    )


def test_cli_unknown_profile_lists_five_names(tmp_path: Path) -> None:
    write_cli(tmp_path, [ak(f"p{i}") for i in range(7)], current="p0")
    assert failure(tmp_path, ALIBABA_CLOUD_PROFILE="nope") == (
        "Profile 'nope' is not in ~/.aliyun/config.json (its profiles: p0, p1, p2, p3, p4 "
        "and 2 more); choose one with --profile (ALIBABA_CLOUD_PROFILE)."
    )


def test_cli_unknown_profile_found_in_ini(tmp_path: Path) -> None:
    write_cli(tmp_path, [ak("default")])
    write_ini(tmp_path, INI)
    found = resolve(tmp_path, ALIBABA_CLOUD_PROFILE="other")
    assert (found.access_key_id, found.source) == (
        "other-id",
        "~/.alibabacloud/credentials.ini (profile 'other')",
    )


def test_cli_malformed_json(tmp_path: Path) -> None:
    write_cli(tmp_path, [])
    (tmp_path / ".aliyun" / "config.json").write_text(f'{{"x": "{SECRET}" oops', "utf-8")
    assert failure(tmp_path) == (
        "~/.aliyun/config.json is not valid JSON (line 1 column 27); fix it or set "
        "ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true to skip it."
    )


# ~/.alibabacloud/credentials.ini


def test_ini_default_section(tmp_path: Path) -> None:
    write_ini(tmp_path, INI)
    assert resolve(tmp_path) == Credentials(
        "ini-id", SECRET, None, "~/.alibabacloud/credentials.ini (profile 'default')"
    )


def test_ini_section_chosen_by_environment(tmp_path: Path) -> None:
    write_ini(tmp_path, INI)
    assert resolve(tmp_path, ALIBABA_CLOUD_PROFILE="other").access_key_id == "other-id"


def test_ini_file_chosen_by_environment(tmp_path: Path) -> None:
    write_ini(tmp_path, INI.replace("ini-id", "elsewhere-id"), "conf/creds.ini")
    found = resolve(tmp_path, ALIBABA_CLOUD_CREDENTIALS_FILE="~/conf/creds.ini")
    assert (found.access_key_id, found.source) == (
        "elsewhere-id",
        "~/conf/creds.ini (profile 'default')",
    )


def test_ini_keeps_percent_signs_in_secrets(tmp_path: Path) -> None:
    write_ini(tmp_path, "[default]\ntype=access_key\naccess_key_id=i\naccess_key_secret=a%(b)s\n")
    assert resolve(tmp_path).access_key_secret == "a%(b)s"


def test_ini_named_file_missing(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.ini")
    assert failure(tmp_path, ALIBABA_CLOUD_CREDENTIALS_FILE=missing) == (
        f"ALIBABA_CLOUD_CREDENTIALS_FILE names {missing}, which does not exist; "
        "fix the path or unset it."
    )


def test_ini_missing_section(tmp_path: Path) -> None:
    write_ini(tmp_path, INI)
    assert failure(tmp_path, ALIBABA_CLOUD_PROFILE="nope") == (
        "Profile 'nope' is not in ~/.alibabacloud/credentials.ini (its profiles: default, "
        "other); choose one with --profile (ALIBABA_CLOUD_PROFILE)."
    )


def test_ini_missing_secret(tmp_path: Path) -> None:
    write_ini(tmp_path, "[default]\ntype = access_key\naccess_key_id = ini-id\n")
    assert failure(tmp_path) == (
        "~/.alibabacloud/credentials.ini (profile 'default') has no access_key_secret; add it."
    )


@pytest.mark.parametrize(
    ("kind_line", "clause"),
    [
        ("type = ecs_ram_role\n", "has type 'ecs_ram_role', which pai-catalog does not support"),
        ("", "has no type"),
    ],
)
def test_ini_unsupported_type(tmp_path: Path, kind_line: str, clause: str) -> None:
    write_ini(tmp_path, f"[default]\n{kind_line}access_key_id = i\naccess_key_secret = {SECRET}\n")
    assert failure(tmp_path) == (
        f"~/.alibabacloud/credentials.ini (profile 'default') {clause}; use type = access_key "
        "with access_key_id and access_key_secret."
    )


def test_ini_malformed(tmp_path: Path) -> None:
    write_ini(tmp_path, f"access_key_secret = {SECRET}\n")
    assert failure(tmp_path) == (
        "~/.alibabacloud/credentials.ini is not a valid INI file (line 1); fix it."
    )


# ECS RAM role through a metadata server on loopback


class Metadata:
    """A fake metadata service: ``routes`` maps (method, path) to (status, body)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, str]] = {}
        self.seen: list[tuple[str, str, str | None]] = []
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                token = self.headers.get("X-aliyun-ecs-metadata-token")
                owner.seen.append((self.command, self.path, token))
                time.sleep(owner.delay)
                status, body = owner.routes.get((self.command, self.path), (404, "Not Found"))
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def role(self, name: str, **body: str) -> None:
        payload = {
            "AccessKeyId": "STS.role-id",
            "AccessKeySecret": SECRET,
            "SecurityToken": TOKEN,
            "Expiration": "2030-01-01T00:00:00Z",
            "Code": "Success",
            **body,
        }
        self.routes[("GET", ROLES + name)] = (200, json.dumps(payload))


@pytest.fixture
def metadata() -> Iterator[Metadata]:
    service = Metadata()
    # A short poll keeps shutdown() from waiting half a second per test.
    thread = threading.Thread(target=service.server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def from_ecs(home: Path, url: str, timeout: float = 2.0, **environ: str) -> Credentials:
    return resolve_credentials(environ=environ, home=home, metadata_url=url, timeout=timeout)


def ecs_failure(home: Path, url: str, timeout: float = 2.0, **environ: str) -> str:
    with pytest.raises(CredentialsError) as caught:
        from_ecs(home, url, timeout, **environ)
    message = str(caught.value)
    assert SECRET not in message
    assert TOKEN not in message
    return message


def test_ecs_discovers_the_role(tmp_path: Path, metadata: Metadata) -> None:
    metadata.routes[("GET", ROLES)] = (200, "pai-sync\n")
    metadata.role("pai-sync")
    assert from_ecs(tmp_path, metadata.url) == Credentials(
        "STS.role-id", SECRET, TOKEN, "ECS RAM role 'pai-sync'"
    )
    assert [(method, path) for method, path, _ in metadata.seen] == [
        ("PUT", "/latest/api/token"),
        ("GET", ROLES),
        ("GET", ROLES + "pai-sync"),
    ]


def test_ecs_named_role_skips_discovery_and_sends_the_imds_token(
    tmp_path: Path, metadata: Metadata
) -> None:
    metadata.routes[("PUT", "/latest/api/token")] = (200, "imds-token")
    metadata.role("named")
    found = from_ecs(tmp_path, metadata.url, ALIBABA_CLOUD_ECS_METADATA="named")
    assert found.source == "ECS RAM role 'named'"
    assert metadata.seen[1:] == [("GET", ROLES + "named", "imds-token")]


def test_ecs_ignores_proxies_in_the_process_environment(
    tmp_path: Path, metadata: Metadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    metadata.role("r")
    assert from_ecs(tmp_path, metadata.url, ALIBABA_CLOUD_ECS_METADATA="r").source == (
        "ECS RAM role 'r'"
    )


def test_ecs_url_from_environment(tmp_path: Path, metadata: Metadata) -> None:
    metadata.role("r")
    environ = {"ALIBABA_CLOUD_ECS_METADATA": "r", "PAI_CATALOG_ECS_METADATA_URL": metadata.url}
    assert resolve_credentials(environ=environ, home=tmp_path).access_key_id == "STS.role-id"


def test_files_beat_ecs(tmp_path: Path, metadata: Metadata) -> None:
    write_ini(tmp_path, INI)
    assert from_ecs(tmp_path, metadata.url).access_key_id == "ini-id"
    assert metadata.seen == []


def test_ecs_disabled_asks_nothing(tmp_path: Path, metadata: Metadata) -> None:
    assert ecs_failure(tmp_path, metadata.url, ALIBABA_CLOUD_ECS_METADATA_DISABLED="true") == (
        NOTHING
    )
    assert metadata.seen == []


def test_ecs_without_a_role_attached(tmp_path: Path, metadata: Metadata) -> None:
    assert ecs_failure(tmp_path, metadata.url) == NOTHING


def test_ecs_unreachable(tmp_path: Path) -> None:
    assert ecs_failure(tmp_path, f"http://127.0.0.1:{closed_port()}") == NOTHING


def test_ecs_too_slow(tmp_path: Path, metadata: Metadata) -> None:
    metadata.delay = 0.5
    assert ecs_failure(tmp_path, metadata.url, timeout=0.1) == NOTHING


def test_ecs_default_address(tmp_path: Path, _never_the_real_metadata_service: list[str]) -> None:
    assert failure(tmp_path, ALIBABA_CLOUD_ECS_METADATA_DISABLED="") == NOTHING
    assert _never_the_real_metadata_service == ["http://100.100.100.200/latest/api/token"]


FIX = "attach the role to the instance or set ALIBABA_CLOUD_ECS_METADATA_DISABLED=true."


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            (500, "boom"),
            f"The ECS metadata service has no credentials for ECS RAM role 'r' (HTTP 500); {FIX}",
        ),
        (
            (200, f'{{"AccessKeySecret": "{SECRET}",'),
            f"The ECS metadata service sent malformed JSON for ECS RAM role 'r'; {FIX}",
        ),
        (
            (200, json.dumps({"Code": "Failed", "AccessKeySecret": SECRET})),
            f"The ECS metadata service refused ECS RAM role 'r' (Code 'Failed'); {FIX}",
        ),
        (
            (200, json.dumps({"Code": "Success", "AccessKeyId": "i", "AccessKeySecret": SECRET})),
            f"The metadata answer for ECS RAM role 'r' has no SecurityToken; {FIX}",
        ),
    ],
    ids=["http-500", "malformed", "code-failed", "no-token"],
)
def test_ecs_bad_answers(
    tmp_path: Path, metadata: Metadata, route: tuple[int, str], message: str
) -> None:
    metadata.routes[("GET", ROLES + "r")] = route
    assert ecs_failure(tmp_path, metadata.url, ALIBABA_CLOUD_ECS_METADATA="r") == message


# Nothing found, and secrets never shown


def test_nothing_found(tmp_path: Path) -> None:
    assert failure(tmp_path) == NOTHING


def test_credentials_never_print_secrets() -> None:
    credentials = Credentials("the-id", SECRET, TOKEN, "environment")
    for text in (str(credentials), repr(credentials), f"{credentials}"):
        assert text == "Credentials(access_key_id='the-id', source='environment')"
