"""Holding the simulator to RunPod's own API document (`openapi.json`, REST v2, 2.0.0).

Every request the simulator accepts and every response it sends is checked here: the path
and method must be an operation of the document, query parameters must be declared ones with
values their schemas allow, a JSON request body must match the operation's `requestBody`
schema, and a response must use a status the operation declares (or `default`), the content
type declared for it, a body matching its schema, and on 429 an integer `Retry-After`.

jsonschema (Draft 2020-12, which OpenAPI 3.1 schemas are) validates the document's own
schemas in place, `$ref`s resolved through a `referencing` registry holding the document.
openapi-core would do the same on top of jsonschema but brings a larger dependency tree
for features (security, servers, deserialisers) the simulator does not need.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

DOCUMENT = Path(__file__).resolve().parents[3] / "shared" / "reference" / "runpod-rest-v2" / "openapi.json"
URN = "urn:runpod:openapi-v2"


def find_document() -> Path | None:
    """The document: next to the repository (`../shared/reference/...`) or under /work/shared."""
    for candidate in (DOCUMENT, Path("/work/shared/reference/runpod-rest-v2/openapi.json")):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    operation: str | None
    problems: list[str] = field(default_factory=list)


class Contract:
    """Validates exchanges; counts them; keeps every problem found."""

    def __init__(self, document: Path | None = None):
        import jsonschema
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        path = document or find_document()
        if path is None:
            raise FileNotFoundError("RunPod's openapi.json was not found (shared/reference/runpod-rest-v2)")
        self.doc = json.loads(Path(path).read_text())
        self._registry = Registry().with_resource(URN, Resource.from_contents(self.doc, DRAFT202012))
        self._validator_class = jsonschema.Draft202012Validator
        self._routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p)
                        for p in sorted(self.doc["paths"], key=lambda p: p.count("{"))]
        self._lock = threading.Lock()
        self.checked = 0
        self.violations: list[str] = []

    # -- lookup ------------------------------------------------------------
    def operation(self, method: str, path: str) -> tuple[str, dict, str] | None:
        """(template, operation object, JSON pointer to it) for a concrete path."""
        for pattern, template in self._routes:
            if pattern.match(path):
                op = self.doc["paths"][template].get(method.lower())
                if op is not None:
                    return template, op, f"/paths/{_escape(template)}/{method.lower()}"
        return None

    def _deref(self, obj: dict) -> dict:
        while "$ref" in obj:
            obj = self._pointer(obj["$ref"].lstrip("#"))
        return obj

    def _pointer(self, pointer: str):
        node = self.doc
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _errors(self, schema_pointer: str, instance) -> list[str]:
        validator = self._validator_class({"$ref": f"{URN}#{schema_pointer}"}, registry=self._registry)
        return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"[:300]
                for e in validator.iter_errors(instance)]

    # -- checks ------------------------------------------------------------
    def request_problems(self, method: str, path: str, query: dict[str, list[str]], body: bytes | None,
                         content_type: str | None) -> list[str]:
        found = self.operation(method, path)
        if found is None:
            return [f"{method} {path} is not an operation of the document"]
        template, op, pointer = found
        problems = self._query_problems(op, query)
        if "requestBody" in op:
            rb = self._deref(op["requestBody"])
            if not body:
                if rb.get("required"):
                    problems.append("the request body is required")
            else:
                problems += self._body_problems(rb, f"{pointer}/requestBody", body, content_type)
        elif body:
            problems.append("a body was sent to an operation that takes none")
        return problems

    def _query_problems(self, op: dict, query: dict[str, list[str]]) -> list[str]:
        params = {p["name"]: p for p in (self._deref(x) for x in op.get("parameters", [])) if p.get("in") == "query"}
        problems = []
        for name, values in query.items():
            param = params.get(name)
            if param is None:
                problems.append(f"query parameter {name!r} is not declared")
                continue
            value = _coerce(values[-1], self._deref(param.get("schema", {})), self._deref)
            validator = self._validator_class(_absolute(param.get("schema", {})), registry=self._registry)
            problems += [f"query {name}: {e.message}" for e in validator.iter_errors(value)]
        return problems

    def _body_problems(self, holder: dict, pointer: str, body: bytes, content_type: str | None) -> list[str]:
        media = (content_type or "").split(";")[0].strip()
        content = holder.get("content") or {}
        if media not in content:
            return [f"content type {media or 'none'!r} is not one of {sorted(content)}"]
        try:
            instance = json.loads(body)
        except ValueError:
            return ["the body is not JSON"]
        if "schema" not in content[media]:
            return []
        return self._errors(f"{pointer}/content/{_escape(media)}/schema", instance)

    def response_problems(self, method: str, path: str, status: int, headers: dict[str, str],
                          body: bytes) -> list[str]:
        found = self.operation(method, path)
        if found is None:
            return [f"{method} {path} is not an operation of the document"]
        _template, op, pointer = found
        responses = op.get("responses", {})
        key = str(status) if str(status) in responses else "default" if "default" in responses else None
        if key is None:
            return [f"status {status} is not declared for {op.get('operationId')}"]
        response = responses[key]
        rpointer = f"{pointer}/responses/{key}"
        while "$ref" in response:
            rpointer = response["$ref"].lstrip("#")
            response = self._pointer(rpointer)
        problems = []
        if status == 429:
            retry = {k.lower(): v for k, v in headers.items()}.get("retry-after")
            if retry is None or not retry.isdigit():
                problems.append(f"429 without an integer Retry-After ({retry!r})")
        if "content" not in response:
            return problems + (["a body was sent where the document declares none"] if body else [])
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type")
        return problems + self._body_problems(response, rpointer, body, ctype)

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.checked += 1
            if exchange.problems:
                self.violations.append(f"{exchange.method} {exchange.path} → {exchange.status} "
                                       f"({exchange.operation}): " + "; ".join(exchange.problems))


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _absolute(schema: dict) -> dict:
    """A parameter schema whose `#/components/...` refs point into the registered document."""
    text = json.dumps(schema).replace('"#/components/', f'"{URN}#/components/')
    return json.loads(text)


def _coerce(raw: str, schema: dict, deref) -> object:
    """A query string value as the JSON value its schema describes (form style, explode false)."""
    kind = schema.get("type")
    if kind == "array":
        items = deref(schema.get("items", {}))
        return [_coerce(v, items, deref) for v in raw.split(",")]
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw, raw)
    if kind == "integer":
        return int(raw) if re.fullmatch(r"-?\d+", raw) else raw
    if kind == "number":
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw
