"""The registry client against a real registry: the CNCF distribution registry (Debian's
docker-registry) started on 127.0.0.1, with images pushed through its API by the test, and a
loopback endpoint in front of it that issues bearer-token challenges."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests

from catalog.sync.registry import RegistryClient, RegistryError, docker_credentials

REGISTRY = shutil.which("docker-registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SECRET = "s3cret-Pa55-for-the-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a registry of our own on 127.0.0.1."""
    if REGISTRY is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    server = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(200):
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("the registry did not start")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def push_blob(host: str, name: str, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = requests.post(f"http://{host}/v2/{name}/blobs/uploads/", timeout=10)
    location = started.headers["Location"]
    joined = "&" if "?" in location else "?"
    done = requests.put(f"{location}{joined}digest={digest}", data=data, timeout=10,
                        headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert done.status_code == 201, done.text
    return {"digest": digest, "size": len(data)}


def push_manifest(host: str, name: str, tag: str, body: dict[str, Any], media_type: str) -> str:
    raw = json.dumps(body).encode()
    done = requests.put(f"http://{host}/v2/{name}/manifests/{tag}", data=raw, timeout=10,
                        headers={"Content-Type": media_type})  # fmt: skip
    assert done.status_code == 201, done.text
    return str(done.headers["Docker-Content-Digest"])


def push_image(host: str, name: str, tag: str, arch: str = "amd64") -> tuple[str, dict[str, Any]]:
    config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers",
                         "diff_ids": []}}).encode()  # fmt: skip
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **push_blob(host, name, config)},
    }  # fmt: skip
    digest = push_manifest(host, name, tag, manifest, OCI_MANIFEST)
    size = len(json.dumps(manifest).encode())
    return digest, {"mediaType": OCI_MANIFEST, "digest": digest, "size": size}


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


class Gate(BaseHTTPRequestHandler):
    """In front of the registry: a 401 with a bearer challenge until the token is shown; the
    token endpoint gives it (to anyone, or only for the right basic credentials); the first
    requests of a run may be answered 429."""

    upstream = ""
    need_password = False
    throttle = 0
    tokens_given = 0
    seen_authorization: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self, head: bool) -> None:
        gate = type(self)
        port = self.server.server_address[1]
        if self.path.startswith("/token"):
            expected = "Basic " + base64.b64encode(f"me:{SECRET}".encode()).decode()
            if gate.need_password and self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            gate.tokens_given += 1
            self._reply(200, json.dumps({"token": "T0KEN"}).encode(), {})
            return
        gate.seen_authorization.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != "Bearer T0KEN":
            self.send_response(401)
            realm = f'Bearer realm="http://127.0.0.1:{port}/token",service="gate"'
            self.send_header("WWW-Authenticate", realm)
            self.end_headers()
            return
        if gate.throttle:
            gate.throttle -= 1
            self.send_response(429)
            self.send_header("Retry-After", "0.01")
            self.end_headers()
            return
        method = "HEAD" if head else "GET"
        found = requests.request(method, f"http://{gate.upstream}{self.path}", timeout=10,
                                 headers={"Accept": self.headers.get("Accept", "")})  # fmt: skip
        keep = ("Docker-Content-Digest", "Content-Type")
        self._reply(found.status_code, b"" if head else found.content,
                    {k: found.headers[k] for k in keep if k in found.headers})  # fmt: skip

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._handle(head=False)

    def do_HEAD(self) -> None:
        self._handle(head=True)


@pytest.fixture
def gate(registry: str) -> Iterator[str]:
    Gate.upstream, Gate.need_password, Gate.throttle, Gate.tokens_given = registry, False, 0, 0
    Gate.seen_authorization = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gate)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
    assert str(caught.value) == f"{gate} answered HTTP 401 for pai/deepspeed/manifests/0.14."
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
