"""REST v2 over HTTP on 127.0.0.1: bearer auth, the contract check, rate limits, faults, dispatch.

Routes are the operations of RunPod's OpenAPI document (`contract.Contract` finds them).
`Authorization: Bearer <key>` with the account key, or a pod's own key for that pod. Every
exchange is validated against the document (request: path, query, body; response: status,
content type, body, `Retry-After`); a request body that breaks its schema is answered 422
with the violations in `errors`, as RunPod does, and is also recorded as a contract violation
(a client of the simulator must never send one). Responses carry the `RateLimit` and
`RateLimit-Policy` headers the document describes; over the limit, a 429 with `Retry-After`.
Every call is recorded in `calls`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from podmagic.records import record
from podmagic.testing.sim.contract import Contract, Exchange
from podmagic.testing.sim.control import Caller, ControlPlane, SimError
from podmagic.testing.sim.faults import Fault, FaultPlan

MAX_BODY = 1 << 20


@record
class Call:
    """One request as the simulator saw it."""

    ts: float
    operation: str
    pod_id: str | None
    status: int
    error: str | None = None
    by_pod: str | None = None


class RateLimiter:
    """A sliding window of `limit` requests per `window_sec` (None: unlimited)."""

    def __init__(self):
        self.limit: int | None = None
        self.window_sec = 60.0
        self._lock = threading.Lock()
        self._seen: deque[float] = deque()

    def set(self, limit: int | None, window_sec: float = 60.0) -> None:
        with self._lock:
            self.limit, self.window_sec = limit, window_sec
            self._seen.clear()

    def take(self) -> tuple[bool, int, int]:
        """(allowed, remaining, seconds until the window frees a slot)."""
        with self._lock:
            now = time.monotonic()
            while self._seen and now - self._seen[0] >= self.window_sec:
                self._seen.popleft()
            if self.limit is None:
                return True, 1000, int(self.window_sec)
            reset = math.ceil(self.window_sec - (now - self._seen[0])) if self._seen else int(self.window_sec)
            if len(self._seen) >= self.limit:
                return False, 0, max(1, reset)
            self._seen.append(now)
            return True, self.limit - len(self._seen), max(1, reset)


class RestServer:
    def __init__(self, plane: ControlPlane, faults: FaultPlan, api_key: str, contract: Contract,
                 host: str = "127.0.0.1", port: int = 0):
        self.plane, self.faults, self.api_key, self.contract = plane, faults, api_key, contract
        self.limiter = RateLimiter()
        self.calls: list[Call] = []
        self.unvalidated = 0
        self._calls_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), _handler_class(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: self._httpd.serve_forever(poll_interval=0.05),
                                        name="runpod-sim-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def record(self, call: Call) -> None:
        with self._calls_lock:
            self.calls.append(call)

    def authenticate(self, header: str | None) -> Caller | None:
        if not header or not header.startswith("Bearer "):
            return None
        key = header[len("Bearer "):].strip()
        if key and key == self.api_key:
            return Caller()
        return self.plane.caller_for(key) if key else None

    def answer(self, method: str, target: str, headers, raw: bytes) -> "Answer":
        """The answer to one request (before the contract check of the response)."""
        split = urlsplit(target)
        path, query = split.path, parse_qs(split.query, keep_blank_values=True)
        found = self.contract.operation(method, path)
        op_name = found[1]["operationId"] if found else "?"
        path_id = _path_id(found[0], path) if found else None
        caller = self.authenticate(headers.get("Authorization"))
        if caller is None:
            return self._error(op_name, path_id, None, SimError(401, "missing or invalid bearer token"))
        problems = self.contract.request_problems(method, path, query, raw or None, headers.get("Content-Type"))
        if problems:
            self.contract.record(Exchange(method, path, 0, op_name, [f"request: {p}" for p in problems]))
            if found is None:
                return self._error(op_name, path_id, caller, SimError(404, f"no such route: {method} {path}"))
            return self._error(op_name, path_id, caller, SimError(422, "the request does not match the contract",
                                                                   problems))
        body = json.loads(raw) if raw else {}
        key = op_name + (f":{body.get('action')}" if op_name == "podAction" else "")
        allowed, remaining, reset = self.limiter.take()
        if not allowed:
            return self._error(key, path_id, caller, SimError(429, "rate limit exceeded for the minute window"),
                               retry_after=reset)
        fault = self.faults.take(key)
        if fault and fault.delay_sec:
            time.sleep(fault.delay_sec)
        if fault and fault.answers and not fault.apply:
            return self._fault(fault, key, path_id, caller)
        try:
            status, result = self.plane.handle(op_name, caller, path_id, query, body)
        except SimError as exc:
            return self._error(key, path_id, caller, exc)
        if fault and fault.answers:
            return self._fault(fault, key, path_id, caller, applied=True)
        self.record(Call(time.time(), key, path_id, status, None, caller.pod_id))
        return Answer(status, "application/json" if result is not None else None,
                      json.dumps(result).encode() if result is not None else b"", remaining=remaining, reset=reset)

    def _error(self, key: str, path_id, caller: Caller | None, exc: SimError, retry_after: int | None = None):
        self.record(Call(time.time(), key, path_id, exc.status, exc.detail, caller.pod_id if caller else None))
        return Answer(exc.status, "application/problem+json", json.dumps(exc.body()).encode(), retry_after=retry_after)

    def _fault(self, fault: Fault, key: str, path_id, caller: Caller, applied: bool = False):
        tag = "injected+applied" if applied else "injected"
        if fault.drop:
            self.record(Call(time.time(), key, path_id, 0, f"{tag}: connection dropped", caller.pod_id))
            return Answer(0, None, b"", drop=True)
        status = fault.status or 500
        self.record(Call(time.time(), key, path_id, status, tag, caller.pod_id))
        if fault.body is not None:
            return Answer(status, "text/html", fault.body.encode(), outside_contract=True)
        detail = fault.message or ("rate limit exceeded for the minute window" if status == 429 else "upstream error")
        return Answer(status, "application/problem+json", json.dumps(SimError(status, detail).body()).encode(),
                      retry_after=fault.retry_after if status == 429 else None)


@record
class Answer:
    status: int
    content_type: str | None
    body: bytes
    retry_after: int | None = None
    remaining: int = 1000
    reset: int = 60
    drop: bool = False
    outside_contract: bool = False

    def headers(self) -> dict[str, str]:
        out = {"RateLimit": f'"minute";r={self.remaining};t={self.reset}',
               "RateLimit-Policy": '"minute";q=1000;w=60'}
        if self.content_type:
            out["Content-Type"] = self.content_type
        if self.retry_after is not None:
            out["Retry-After"] = str(int(self.retry_after))
        return out


def _path_id(template: str, path: str) -> str | None:
    parts, actual = template.split("/"), path.split("/")
    for part, value in zip(parts, actual):
        if part == "{id}":
            return value
    return None


def _handler_class(server: RestServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "runpod-sim/2"

        def log_message(self, *args) -> None:  # quiet: calls are recorded instead
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, MAX_BODY)) if length else b""
            answer = server.answer(self.command, self.path, self.headers, raw)
            if answer.drop:
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
            headers = answer.headers()
            if not answer.outside_contract:
                path = urlsplit(self.path).path
                problems = server.contract.response_problems(self.command, path, answer.status, headers, answer.body)
                server.contract.record(Exchange(self.command, path, answer.status, None,
                                                [f"response: {p}" for p in problems]))
            else:
                server.unvalidated += 1
            self.send_response(answer.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            try:
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler
