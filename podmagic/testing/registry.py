"""A stub of Docker Hub's v2 tag API on 127.0.0.1, for `podmagic validate --check-image` in tests.

    with StubRegistry({"runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"}) as hub:
        os.environ["PODMAGIC_DOCKER_HUB_URL"] = hub.url

`GET /v2/repositories/<namespace>/<name>/tags/<tag>` answers 200 with a tag object for the
listed images (Docker Hub's shape: `name`, `full_size`, `last_updated`, `tag_status`) and 404
with `{"message": "httperror 404: tag '<tag>' not found", "errinfo": {...}}` otherwise, as Docker
Hub does. `requests` records every path asked for.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TAG_PATH = re.compile(r"^/v2/repositories/([^/]+)/([^/]+)/tags/([^/?]+)$")


def _key(image: str) -> str:
    path, _, tag = image.rpartition(":")
    return f"{path if '/' in path else 'library/' + path}:{tag}"


class StubRegistry:
    def __init__(self, images: set[str] | tuple[str, ...] = ()):
        self.images = {_key(i) for i in images}
        self.requests: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "StubRegistry":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                stub.requests.append(self.path)
                found = TAG_PATH.match(self.path)
                if found and f"{found[1]}/{found[2]}:{found[3]}" in stub.images:
                    status, body = 200, {"name": found[3], "full_size": 1, "tag_status": "active",
                                         "last_updated": "2024-07-24T00:00:00Z"}
                else:
                    tag = found[3] if found else "?"
                    status, body = 404, {"message": f"httperror 404: tag '{tag}' not found",
                                         "errinfo": {"tag": tag}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
