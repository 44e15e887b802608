"""GraphQL over HTTP on 127.0.0.1: bearer auth, fault injection, dispatch.

`POST /graphql` with `{"query": "..."}` and `Authorization: Bearer <key>`
(the account key, or a pod's own key for calls about that pod). A wrong or
missing key is a 401. Malformed documents get a 400 with a GraphQL `errors`
list; resolver errors a 200 with `errors` and `data.<field>: null`, as the
real API does. Every call is recorded in `calls` for tests to inspect.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from podmagic.testing.sim.control import ApiError, Caller, ControlPlane
from podmagic.testing.sim.faults import Fault, FaultPlan
from podmagic.testing.sim.gql import GraphQLSyntaxError, parse

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Call:
    """One request as the simulator saw it."""

    ts: float
    operation: str
    pod_id: str | None
    status: int
    error: str | None = None
    by_pod: str | None = None


class GraphQLServer:
    def __init__(self, plane: ControlPlane, faults: FaultPlan, api_key: str,
                 host: str = "127.0.0.1", port: int = 0):
        self.plane, self.faults, self.api_key = plane, faults, api_key
        self.calls: list[Call] = []
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

    def answer(self, query: str, caller: Caller) -> tuple[int, str, str]:
        """(status, content type, body) for one document."""
        try:
            op = parse(query)
        except GraphQLSyntaxError as exc:
            self.record(Call(time.time(), "?", None, 400, str(exc), caller.pod_id))
            return 400, "application/json", _errors(str(exc))
        name = op.fields[0].name
        pod_id = (op.fields[0].args.get("input") or {}).get("podId")
        fault = self.faults.take(name)
        if fault and fault.delay_sec:
            time.sleep(fault.delay_sec)
        if fault and fault.answers and not fault.apply:
            return self._fault(fault, name, pod_id, caller)
        status, body, error = self._execute(op.fields, caller)
        if fault and fault.answers:
            return self._fault(fault, name, pod_id, caller, applied=True)
        self.record(Call(time.time(), name, pod_id, status, error, caller.pod_id))
        return status, "application/json", body

    def _execute(self, fields, caller: Caller) -> tuple[int, str, str | None]:
        data, errors = {}, []
        for field in fields:
            try:
                data[field.key] = self.plane.execute(field, caller)
            except ApiError as exc:
                data[field.key] = None
                errors.append({"message": str(exc), "path": [field.key],
                               "extensions": {"code": "BAD_REQUEST"}})
        body = {"data": data, **({"errors": errors} if errors else {})}
        return 200, json.dumps(body), errors[0]["message"] if errors else None

    def _fault(self, fault: Fault, name: str, pod_id, caller: Caller,
               applied: bool = False) -> tuple[int, str, str]:
        tag = "injected+applied" if applied else "injected"
        if fault.is_graphql_error:
            self.record(Call(time.time(), name, pod_id, 200, f"{tag}: {fault.message}", caller.pod_id))
            body = json.dumps({"data": {name: None}, "errors": [{"message": fault.message, "path": [name]}]})
            return 200, "application/json", body
        self.record(Call(time.time(), name, pod_id, fault.status, tag, caller.pod_id))
        return fault.status, "text/html", fault.body


def _errors(message: str) -> str:
    return json.dumps({"errors": [{"message": message, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]})


def _handler_class(server: GraphQLServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "runpod-sim/1"

        def log_message(self, *args) -> None:  # quiet: calls are recorded instead
            pass

        def do_GET(self) -> None:
            self._send(405, "text/plain", "POST a GraphQL document to /graphql\n")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, MAX_BODY)) if length else b""
            if self.path.split("?")[0].rstrip("/") != "/graphql":
                return self._send(404, "text/plain", "not found\n")
            caller = server.authenticate(self.headers.get("Authorization"))
            if caller is None:
                server.record(Call(time.time(), "?", None, 401, "unauthorized"))
                return self._send(401, "application/json", _errors("Unauthorized"))
            try:
                query = json.loads(raw or b"{}")["query"]
            except (ValueError, KeyError, TypeError):
                return self._send(400, "application/json", _errors("Body must be JSON with a 'query'."))
            self._send(*server.answer(str(query), caller))

        def _send(self, status: int, ctype: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler
