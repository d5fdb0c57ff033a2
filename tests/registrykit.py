"""A real registry for tests: the CNCF distribution registry (Debian's docker-registry) on
127.0.0.1, images pushed through its API, and a loopback gate in front of it that issues
bearer-token challenges."""

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
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests

REGISTRY = shutil.which("docker-registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SECRET = "s3cret-Pa55-for-the-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_registry(root: Path) -> Iterator[str]:
    """host:port of a registry of our own on 127.0.0.1, storing under ``root``."""
    if REGISTRY is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
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


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Iterator[str]:
    """host:port of ``handler`` answering on a loopback address, in a thread of its own."""
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def running_gate(upstream: str, need_password: bool = False) -> Iterator[str]:
    """host:port of a Gate in front of ``upstream``."""
    Gate.upstream, Gate.need_password, Gate.throttle, Gate.tokens_given = (
        upstream, need_password, 0, 0,
    )  # fmt: skip
    Gate.seen_authorization = []
    with serving(Gate) as host:
        yield host


def push_index(host: str, name: str, tag: str, platforms: dict[str, str]) -> str:
    """An index of one image per platform ({"linux/arm64/v8": "arm64", ...}, architecture by
    platform), pushed under ``tag``; its digest."""
    entries = []
    for platform, arch in platforms.items():
        _, descriptor = push_image(host, name, f"{tag}-{arch}", arch)
        os_, architecture, *variant = platform.split("/")
        where = {"os": os_, "architecture": architecture}
        if variant:
            where["variant"] = variant[0]
        entries.append({**descriptor, "platform": where})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return push_manifest(host, name, tag, index, OCI_INDEX)
