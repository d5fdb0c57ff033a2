"""The registry client against a real registry: the CNCF distribution registry (Debian's
docker-registry) started on 127.0.0.1, with images pushed through its API by the test, and a
loopback endpoint in front of it that issues bearer-token challenges."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest

from catalog.sync.registry import MAX_BODY, RegistryClient, RegistryError, docker_credentials
from tests.registrykit import (
    OCI_INDEX,
    OCI_MANIFEST,
    SECRET,
    Gate,
    push_image,
    push_manifest,
    serving,
)


def test_a_single_image_gives_its_digest_and_its_configs_platform(registry: str) -> None:
    digest, _ = push_image(registry, "pai/pytorch", "2.1-gpu")
    client = RegistryClient()
    try:
        found = client.manifest(f"{registry}/pai/pytorch:2.1-gpu")
        again = client.manifest(f"{registry}/pai/pytorch:2.1-gpu", known=digest)
        other = client.manifest(f"{registry}/pai/pytorch:2.1-gpu", known="sha256:" + "0" * 64)
    finally:
        client.close()
    assert (found.digest, found.media_type, found.platforms) == (
        digest, OCI_MANIFEST, ("linux/amd64",)
    )  # fmt: skip
    # A recheck that finds the digest it knew reads nothing more; another digest is read.
    assert (again.digest, again.platforms) == (digest, None)
    assert other == found


def test_an_index_gives_its_digest_and_platforms_and_a_moved_tag_a_new_digest(
    registry: str,
) -> None:
    _, amd = push_image(registry, "pai/tensorflow", "amd-only", "amd64")
    _, arm = push_image(registry, "pai/tensorflow", "arm-only", "arm64")
    index = {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {**amd, "platform": {"os": "linux", "architecture": "amd64"}},
            {**arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {**amd, "platform": {"os": "unknown", "architecture": "unknown"}},  # attestation
        ],
    }  # fmt: skip
    first = push_manifest(registry, "pai/tensorflow", "2.16", index, OCI_INDEX)
    client = RegistryClient()
    try:
        found = client.manifest(f"{registry}/pai/tensorflow:2.16")
        assert (found.digest, found.media_type) == (first, OCI_INDEX)
        assert found.platforms == ("linux/amd64", "linux/arm64/v8")
        moved, _ = push_image(registry, "pai/tensorflow", "2.16", "amd64")
        again = client.manifest(f"{registry}/pai/tensorflow:2.16")
        assert again.digest == moved != first and again.platforms == ("linux/amd64",)
        assert client.manifest(f"{registry}/pai/tensorflow@{first}").platforms == found.platforms
    finally:
        client.close()


def test_an_image_the_registry_lacks_is_one_error(registry: str) -> None:
    client = RegistryClient(retries=0)
    try:
        with pytest.raises(RegistryError) as caught:
            client.manifest(f"{registry}/pai/nothing:1.0")
    finally:
        client.close()
    assert str(caught.value) == f"{registry} answered no such image for pai/nothing/manifests/1.0."


def test_a_bearer_challenge_is_followed_and_its_token_kept(registry: str, gate: str) -> None:
    digest, _ = push_image(registry, "pai/xgboost", "1.7")
    slept: list[float] = []
    Gate.throttle = 1  # the first request with the token is throttled: a retry, not an error
    client = RegistryClient(sleep=slept.append)
    try:
        assert client.manifest(f"{gate}/pai/xgboost:1.7").digest == digest
        assert client.manifest(f"{gate}/pai/xgboost:1.7").digest == digest
    finally:
        client.close()
    assert Gate.tokens_given == 1 and slept == [0.01]


def test_credentials_from_dockers_config_reach_the_token_endpoint_and_nowhere_else(
    registry: str, gate: str, tmp_path: Path
) -> None:
    digest, _ = push_image(registry, "pai/deepspeed", "0.14")
    Gate.need_password = True
    anonymous = RegistryClient(retries=0)
    try:
        with pytest.raises(RegistryError) as caught:
            anonymous.manifest(f"{gate}/pai/deepspeed:0.14")
    finally:
        anonymous.close()
    assert str(caught.value) == (
        f"{gate} answered HTTP 401 for pai/deepspeed/manifests/0.14 (no credentials for {gate}: "
        f"docker login {gate} keeps them)."
    )
    config = tmp_path / ".docker" / "config.json"
    config.parent.mkdir()
    pair = base64.b64encode(f"me:{SECRET}".encode()).decode()
    config.write_text(json.dumps({"auths": {f"http://{gate}": {"auth": pair}}}))
    credentials = docker_credentials(tmp_path)
    assert credentials == {gate: ("me", SECRET)}
    client = RegistryClient(credentials)
    try:
        assert client.manifest(f"{gate}/pai/deepspeed:0.14").digest == digest
    finally:
        client.close()
    # The registry itself was only ever shown the token.
    assert all(SECRET not in seen and pair not in seen for seen in Gate.seen_authorization)


@pytest.mark.parametrize(
    "content", ["", "{", '{"auths": 3}', '{"auths": {"h": {"auth": "%%%"}}}', '["x"]']
)
def test_a_docker_config_that_cannot_be_read_gives_no_credentials(
    tmp_path: Path, content: str
) -> None:
    config = tmp_path / ".docker" / "config.json"
    config.parent.mkdir()
    config.write_text(content)
    assert docker_credentials(tmp_path) == {}


class Hostile(BaseHTTPRequestHandler):
    """A registry that answers what a test sets: a challenge whose realm is a plain-HTTP token
    endpoint elsewhere, a manifest too large to hold, or a body that is not JSON."""

    realm = ""
    body = b""
    content_type = OCI_MANIFEST
    digest_header = ""
    drip = 0.0  # seconds between the body's bytes
    redirect = ""
    seen: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, head: bool) -> None:
        kind = type(self)
        kind.seen.append(f"{self.path} {self.headers.get('Authorization', '')}")
        if self.path.startswith("/token"):
            body = json.dumps({"token": "T"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if kind.realm and self.headers.get("Authorization") != "Bearer T":
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{kind.realm}",service="h"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind.redirect:
            self.send_response(307)
            self.send_header("Location", kind.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", kind.content_type)
        self.send_header("Content-Length", str(len(kind.body)))
        if kind.digest_header:
            self.send_header("Docker-Content-Digest", kind.digest_header)
        self.end_headers()
        if head:
            return
        if not kind.drip:
            self.wfile.write(kind.body)
            return
        for byte in kind.body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(kind.drip)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)


@pytest.fixture
def hostile() -> Iterator[str]:
    Hostile.realm, Hostile.body, Hostile.content_type, Hostile.seen = "", b"", OCI_MANIFEST, []
    Hostile.digest_header, Hostile.drip, Hostile.redirect = "", 0.0, ""
    with serving(Hostile) as host:
        yield host


def test_credentials_never_travel_to_a_plain_http_token_endpoint_elsewhere(
    hostile: str,
) -> None:
    """127.0.0.2 stands for another host: it is not the registry's own machine name."""
    with serving(Hostile, "127.0.0.2") as elsewhere:
        Hostile.realm = f"http://{elsewhere}/token"
        Hostile.body = json.dumps({"schemaVersion": 2, "config": {}}).encode()
        client = RegistryClient({hostile: ("me", SECRET)}, retries=0)
        try:
            found = client.manifest(f"{hostile}/pai/pytorch:2.1")
        finally:
            client.close()
    assert found.digest == "sha256:" + hashlib.sha256(Hostile.body).hexdigest()
    tokens = [seen for seen in Hostile.seen if seen.startswith("/token")]
    assert len(tokens) == 1 and tokens[0].endswith(" ")  # asked anonymously
    pair = base64.b64encode(f"me:{SECRET}".encode()).decode()
    assert all(pair not in seen for seen in Hostile.seen)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{" + b" " * (MAX_BODY + 1) + b"}", "is over 4 MiB."),
        (b"<html>not json</html>", "is not a JSON object."),
        (b"[1, 2]", "is not a JSON object."),
    ],
)
def test_a_manifest_too_large_or_not_json_is_one_error(
    hostile: str, body: bytes, message: str
) -> None:
    Hostile.body = body
    client = RegistryClient(retries=0)
    try:
        with pytest.raises(RegistryError) as caught:
            client.manifest(f"{hostile}/pai/pytorch:2.1")
    finally:
        client.close()
    assert str(caught.value) == f"The registry's answer for {hostile}/pai/pytorch:2.1 {message}"


def test_odd_platforms_in_an_index_are_left_out(hostile: str) -> None:
    entry = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1}
    Hostile.content_type = OCI_INDEX
    Hostile.body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**entry, "platform": {"os": "linux", "architecture": "amd64"}},
        {**entry, "platform": {"os": "linux", "architecture": "arm,64"}},
        {**entry, "platform": {"os": "linux", "architecture": "x" * 40}},
        {**entry, "platform": {"os": "linux", "architecture": "%"}},
        {**entry, "platform": {"os": "linux", "architecture": 64}},
        {**entry, "platform": "linux/amd64"},
        {**entry, "platform": {"os": "unknown", "architecture": "unknown"}},
    ]}).encode()  # fmt: skip
    client = RegistryClient(retries=0)
    try:
        assert client.manifest(f"{hostile}/pai/pytorch:2.1").platforms == ("linux/amd64",)
    finally:
        client.close()


def _refused(
    hostile: str, credentials: dict[str, tuple[str, str]] | None = None, **client: Any
) -> str:
    found = RegistryClient(credentials, retries=0, **client)
    try:
        with pytest.raises(RegistryError) as caught:
            found.manifest(f"{hostile}/pai/pytorch:2.1")
    finally:
        found.close()
    return str(caught.value)


INDEX_BODY = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()


def test_a_registry_sending_a_byte_at_a_time_is_bounded_by_the_timeout(hostile: str) -> None:
    Hostile.body, Hostile.drip = INDEX_BODY + b" " * 400, 0.02  # 9 s in all, a byte at a time
    started = time.monotonic()
    message = _refused(hostile, timeout=0.3)
    assert (
        message == f"The registry's answer for {hostile}/pai/pytorch:2.1 took over 0.3 s to arrive."
    )
    assert time.monotonic() - started < 3


def test_a_digest_the_manifest_does_not_have_is_refused(hostile: str) -> None:
    Hostile.body, Hostile.content_type = INDEX_BODY, OCI_INDEX
    Hostile.digest_header = "sha256:" + "0" * 64
    assert _refused(hostile) == (
        f"{hostile} answered a digest for {hostile}/pai/pytorch:2.1 that its manifest lacks."
    )


def test_the_bodys_media_type_wins_and_no_manifest_is_refused(hostile: str) -> None:
    Hostile.body, Hostile.content_type = INDEX_BODY, "text/html"
    client = RegistryClient(retries=0)
    try:
        assert client.manifest(f"{hostile}/pai/pytorch:2.1").media_type == OCI_INDEX
    finally:
        client.close()
    Hostile.body, Hostile.content_type = json.dumps({"token": "x"}).encode(), "application/json"
    assert (
        _refused(hostile)
        == f"{hostile} answered {hostile}/pai/pytorch:2.1 with no image manifest or index."
    )


def test_a_manifest_is_never_followed_to_another_address(hostile: str, registry: str) -> None:
    Hostile.redirect = f"http://{registry}/v2/pai/pytorch/manifests/2.1-gpu"
    assert _refused(hostile) == f"{hostile} answered HTTP 307 for pai/pytorch/manifests/2.1."


def test_docker_config_names_the_folder_of_the_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    pair = base64.b64encode(b"me:pw").decode()
    (folder / "config.json").write_text(json.dumps({"auths": {"r.local": {"auth": pair}}}))
    assert docker_credentials(tmp_path) == {}
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    assert docker_credentials(tmp_path) == {"r.local": ("me", "pw")}


@pytest.mark.parametrize(
    "realm",
    [
        "http://127.0.0.1:x@127.0.0.2:{port}/token",  # user info: the host is 127.0.0.2
        "http://127.0.0.1@127.0.0.2:{port}/token",
        "http://127.0.0.2:{port}\\@127.0.0.1/token",
    ],
)
def test_a_realm_that_hides_its_host_gets_no_credentials(hostile: str, realm: str) -> None:
    with serving(Hostile, "127.0.0.2") as elsewhere:
        Hostile.realm = realm.format(port=elsewhere.rsplit(":", 1)[1])
        Hostile.body = INDEX_BODY
        message = _refused(hostile, credentials={hostile: ("me", SECRET)})
    assert "answered HTTP 401" in message
    pair = base64.b64encode(f"me:{SECRET}".encode()).decode()
    assert all(pair not in seen for seen in Hostile.seen)
    assert not [seen for seen in Hostile.seen if seen.startswith("/token")]
