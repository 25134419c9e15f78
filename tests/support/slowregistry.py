"""A real (tiny) registry on loopback that serves one image of one layer slowly: the engine reports
download progress the way it does for a large image on a slow link."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import platform
import tarfile
import threading
import time


class SlowRegistry:
    """A real (tiny) registry on loopback serving one image of one layer of random bytes, slowly, so the
    engine reports download progress the way it does for a large image on a slow link."""

    def __init__(self, layer_size: int = 3_000_000, chunk: int = 64 * 1024, delay: float = 0.03) -> None:
        data = os.urandom(layer_size)  # random: gzip cannot shrink it, the download is layer_size bytes
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("data")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar_bytes = buf.getvalue()
        self.layer = gzip.compress(tar_bytes, compresslevel=1)
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        config = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [_digest(tar_bytes)]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {"mediaType": CONFIG_V1, "size": len(config), "digest": _digest(config)},
                "layers": [{"mediaType": LAYER_GZIP, "size": len(self.layer), "digest": _digest(self.layer)}],
            }
        ).encode()
        blobs = {_digest(config): config, _digest(self.layer): self.layer}
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self.answer(head=True)

            def do_GET(self) -> None:
                self.answer(head=False)

            def answer(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                body: bytes | None = None
                kind = "application/json"
                if path == "/v2/":
                    body = b"{}"
                elif "/manifests/" in path:
                    body, kind = manifest, MANIFEST_V2
                elif "/blobs/" in path:
                    body = blobs.get(path.rsplit("/", 1)[1])
                    kind = "application/octet-stream"
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Content-Digest", _digest(body))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.end_headers()
                if head:
                    return
                slow = body is registry.layer
                for i in range(0, len(body), chunk if slow else len(body)):
                    self.wfile.write(body[i : i + chunk] if slow else body)
                    if slow:
                        time.sleep(delay)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
