"""YAML text → a typed, validated `JobSpec` that remembers where each value was.

No I/O. Strict like runpod-deploy's schema_version 2 (unknown keys, wrong
types and bad ranges are errors) and friendlier: every error is one line,
`cell:LINE:COL: error: ...`, with a did-you-mean or the fix. Duplicate keys
are errors (not last-wins); anchors and aliases are bounded. Raw strings are
kept; templates are rendered by the plan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from podmagic.errors import SpecError, close_matches  # SpecError lives in errors: front ends catch it without spec
from podmagic.records import field, mutable, record, replace
from podmagic.spec import schema

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import yaml  # imported by `compose` only: a spec whose nodes are kept (`run.speccache`) never loads it

MAX_CELL_BYTES = 512 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 64
"""Deeper nesting is refused before composing (PyYAML's composer recurses)."""
# \Z, not $: `$` also matches before a trailing newline ("3.13\n", "HF_TOKEN\n").
PYTHON_VERSION_RE = re.compile(r"^3\.\d+(\.\d+)?\Z")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
MODE_RE = re.compile(r"^0?[0-7]{3}\Z")


@record
class Loc:
    line: int
    col: int


@record
class LocalSpec:
    project_root: str | None = None
    required_paths: tuple[str, ...] = ()


@record
class PodSpec:
    image: str | None = None
    datacenters: tuple[str, ...] = ()
    gpu_order: tuple[str, ...] = ()
    cloud_type: str = "SECURE"
    ports: tuple[str, ...] = ("22/tcp",)
    container_disk_gb: int = 20
    gpu_count: int = 1
    spot: bool = False
    min_vcpu_count: int | None = None
    min_memory_gb: int | None = None
    python_version: str | None = None


@record
class StorageSpec:
    mode: str = "ephemeral"
    volume_mount: str = "/workspace"
    volume_name: str | None = None
    volume_gb: int | None = None


@record
class SshSpec:
    key_path: str = "~/.ssh/id_ed25519"


@record
class BudgetSpec:
    cost_cap_usd: float = 10.0
    assumed_hourly_rate_usd: float = 1.65
    max_runtime_minutes: int | None = None
    poll_interval_sec: int = 60
    ssh_ready_timeout_sec: int = 900

    @property
    def timeout_sec(self) -> float:
        if self.max_runtime_minutes:
            return self.max_runtime_minutes * 60.0
        return self.cost_cap_usd / self.assumed_hourly_rate_usd * 3600.0


@record
class RemoteEnvSpec:
    source_files: tuple[str, ...] = ()
    exports: tuple[tuple[str, str], ...] = ()


@record
class CommandSpec:
    command: str
    timeout_sec: int = 600
    with_env: bool = False


@record
class StagingSpec:
    label: str
    source: str
    destination: str
    excludes: tuple[str, ...] = ()
    excludes_default: bool = False
    excludes_extra: tuple[str, ...] = ()
    delete: bool = True

    @property
    def effective_excludes(self) -> tuple[str, ...]:
        defaults = schema.DEFAULT_STAGING_EXCLUDES if self.excludes_default else ()
        return defaults + self.excludes + self.excludes_extra


@record
class SecretSpec:
    name: str
    destination: str
    env: tuple[str, ...] = ()
    file: str | None = None
    mode: str = "0600"


@record
class RunSpec:
    body: str
    script_path: str | None = None
    log_path: str | None = None
    success_marker: str | None = None
    failure_markers: tuple[str, ...] = ()


@record
class ArtifactSpec:
    label: str
    remote_path: str
    local_path: str
    required: bool = True
    excludes: tuple[str, ...] = ()
    delete: bool = False


@record
class LifecycleSpec:
    on_success: str = "delete"
    on_failure: str = "stop"


@record
class TelemetrySpec:
    enabled: bool = True
    sample_interval_sec: int = 30
    capture_nvidia_smi: bool = True
    capture_dmesg: bool = True
    capture_pod_describe: bool = True
    capture_remote_env: bool = True
    capture_local_git: bool = True
    capture_payload_lockfile: bool = True


@record
class JobSpec:
    text: str
    source: str
    run: RunSpec
    name: str | None = None
    run_id_prefix: str | None = None
    state_file: str | None = None
    local: LocalSpec = LocalSpec()
    pod: PodSpec = PodSpec()
    storage: StorageSpec = StorageSpec()
    ssh: SshSpec = SshSpec()
    budget: BudgetSpec = BudgetSpec()
    remote_env: RemoteEnvSpec = RemoteEnvSpec()
    setup: tuple[CommandSpec, ...] = ()
    preflight: tuple[CommandSpec, ...] = ()
    staging: tuple[StagingSpec, ...] | None = None
    """None: stage the project to `<volume_mount>/repo` (the notebook default)."""
    secrets: tuple[SecretSpec, ...] = ()
    artifacts: tuple[ArtifactSpec, ...] = ()
    lifecycle: LifecycleSpec = LifecycleSpec()
    telemetry: TelemetrySpec = TelemetrySpec()
    variables: tuple[tuple[str, str], ...] = ()
    line_offset: int = 0
    positions: Mapping[str, Loc] = field(default_factory=dict, repr=False, compare=False)

    def where(self, path: str) -> Loc:
        """Position of a dotted path, falling back to its nearest parent."""
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path.rpartition(".")[0] if "." in path else ""
        return Loc(1, 1)

    def error(self, path: str, message: str) -> SpecError:
        loc = self.where(path)
        return SpecError(message, loc.line, loc.col, self.source)


# ---------------------------------------------------------------- YAML → nodes


@mutable
class _Node:
    value: Any
    line: int
    col: int
    raw: str | None = None
    """A scalar's text as written (YAML reads `3.10` as the float 3.1)."""


class _Reader:
    """Turns composed YAML nodes into `_Node`s, checking duplicates and size."""

    def __init__(self, source: str, line_offset: int):
        import yaml

        self.source, self.offset, self.count, self.yaml = source, line_offset, 0, yaml
        self.constructor = yaml.constructor.SafeConstructor()

    def error(self, message: str, mark: Any) -> SpecError:
        return SpecError(message, mark.line + 1 + self.offset, mark.column + 1, self.source)

    def node(self, n: yaml.Node, path: str) -> _Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.error(f"the YAML expands to more than {MAX_NODES:,} values "
                             "(an anchor/alias bomb?); write the values out", n.start_mark)
        line, col = n.start_mark.line + 1 + self.offset, n.start_mark.column + 1
        if isinstance(n, self.yaml.MappingNode):
            return _Node(self.mapping(n, path), line, col)
        if isinstance(n, self.yaml.SequenceNode):
            return _Node([self.node(item, f"{path}[{i}]") for i, item in enumerate(n.value)], line, col)
        return _Node(self.scalar(n), line, col, n.value)

    def scalar(self, n: yaml.Node) -> Any:
        """A scalar's value; a tag that cannot build one (`!foo`, `!!int abc`) is a positioned error."""
        if n.tag == "tag:yaml.org,2002:merge":
            raise self.error("YAML merge keys (`<<:`) are not supported; write the keys out", n.start_mark)
        try:
            return self.constructor.construct_object(n)
        except (self.yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError):
            raise self.error(f"cannot read the value {n.value!r} as tag {n.tag!r}; remove the tag or quote "
                             "the value", n.start_mark) from None

    def mapping(self, n: yaml.MappingNode, path: str) -> dict[str, tuple[_Node, _Node]]:
        out: dict[str, tuple[_Node, _Node]] = {}
        for key_node, value_node in n.value:
            key = self.scalar(key_node) if isinstance(key_node, self.yaml.ScalarNode) else None
            where = f"{path}." if path else ""
            if not isinstance(key, str):
                raise self.error(f"keys must be plain names; got {key!r} under `{path or 'the top level'}`", key_node.start_mark)
            if key in out:
                first = out[key][0]
                raise self.error(f"duplicate key `{where}{key}` (first set at line {first.line}); "
                                 "keep one", key_node.start_mark)
            key_loc = _Node(key, key_node.start_mark.line + 1 + self.offset, key_node.start_mark.column + 1)
            out[key] = (key_loc, self.node(value_node, where + key))
        return out


def check_size(text: str, source: str = "cell", line_offset: int = 0) -> None:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CELL_BYTES:
        raise SpecError(f"the spec is larger than {MAX_CELL_BYTES // 1024} KiB; keep data in "
                        "files and stage them", 1 + line_offset, 1, source)


def compose(text: str, *, source: str = "cell", line_offset: int = 0) -> _Node | None:
    """The YAML's nodes (values, positions, scalars' text), duplicates and size checked; None if empty."""
    import yaml

    check_size(text, source, line_offset)
    reader = _Reader(source, line_offset)
    try:
        _check_depth(text, reader)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        line, hint = _yaml_hint(problem, text, mark.line)
        if line != mark.line:
            raise SpecError(f"invalid YAML: {hint}", line + 1 + line_offset, 1, source) from None
        raise reader.error(f"invalid YAML: {problem}" + (f"; {hint}" if hint else ""), mark) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1 + line_offset, exc.position - (before.rfind("\n") + 1) + 1
        raise SpecError(f"invalid YAML: unacceptable character #x{exc.character:04x} ({exc.reason}); "
                        "remove it", line, col, source) from None
    except yaml.YAMLError as exc:
        raise SpecError("invalid YAML: " + " ".join(str(exc).split()), 1 + line_offset, 1, source) from None
    return None if root is None else reader.node(root, "")


_NO_SPACE = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][\w.-]*):(?=[^\s/:])(\S*)")
_VALUE_COLON = re.compile(r"^\s*(?:-\s+)?[A-Za-z_][\w.-]*:\s+[^'\"\s].*:\s")


def _yaml_hint(problem: str, text: str, index: int) -> tuple[int, str]:
    """A plain-words hint for PyYAML's terse errors: (0-based line to report, hint)."""
    lines = text.splitlines()
    if "\\t" in problem or "tab" in problem:
        return index, "YAML indentation must use spaces, not tabs"
    for i in range(min(index, len(lines) - 1), max(index - 3, -1), -1):
        found = _NO_SPACE.match(lines[i]) if i >= 0 else None
        if found:
            key, rest = found.groups()
            return i, (f"put a space after the colon: `{key}:{rest}` should be `{key}: {rest}` "
                       "(without it YAML reads the line as one word)")
    for i in range(min(index, len(lines) - 1), max(index - 2, -1), -1):
        if re.match(r"^\s*-[^\s-]", lines[i]):
            return i, "put a space after the dash of a list item: `- key: value`"
    current = lines[index] if 0 <= index < len(lines) else ""
    if "mapping values are not allowed" in problem:
        if _VALUE_COLON.match(current):
            return index, "a value holding ': ' must be quoted (e.g. `run: \"echo a: b\"`), or use `|` for a script"
        return index, ("this line is indented more than the key above it; keys of one section must "
                       "start in the same column")
    if any(p in problem for p in ("expected <block end>", "did not find expected key",
                                  "could not find expected ':'", "expected <block mapping start>")):
        return index, ("the indentation of this line does not match the lines above it; keys of one "
                       "section must start in the same column, and list items (`- `) under their key")
    return index, ""


def _check_depth(text: str, reader: _Reader) -> None:
    """Refuse nesting deeper than MAX_DEPTH, from the event stream (which does not recurse)."""
    yaml = reader.yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the check costs a fortieth
    try:
        _depth(yaml.parse(text, Loader=loader), reader)
    except yaml.YAMLError:  # PyYAML's own parser words (and positions) the errors users see
        _depth(yaml.parse(text, Loader=yaml.SafeLoader), reader)


def _depth(events, reader: _Reader) -> None:
    depth, yaml = 0, reader.yaml
    for event in events:
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise reader.error(f"the YAML nests deeper than {MAX_DEPTH} levels; flatten it", event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


_KEPT = (str, int, float, bool, type(None))


def dump_nodes(node: _Node) -> list | None:
    """`node` as JSON data for `load_nodes`; None when a value is not JSON's (a timestamp, `!!binary`)."""
    value = node.value
    if isinstance(value, dict):
        items = []
        for key, (key_node, child) in value.items():
            inner = dump_nodes(child)
            if inner is None:
                return None
            items.append([key, key_node.line, key_node.col, inner])
        return ["m", node.line, node.col, items]
    if isinstance(value, list):
        inner = [dump_nodes(child) for child in value]
        return None if any(i is None for i in inner) else ["l", node.line, node.col, inner]
    return ["s", node.line, node.col, value, node.raw] if type(value) in _KEPT else None


def load_nodes(data: list) -> _Node:
    """The nodes `dump_nodes` wrote (a malformed `data` raises ValueError, TypeError or IndexError)."""
    kind, line, col = data[0], data[1], data[2]
    if kind == "m":
        return _Node({k: (_Node(k, kl, kc), load_nodes(child)) for k, kl, kc, child in data[3]}, line, col)
    if kind == "l":
        return _Node([load_nodes(child) for child in data[3]], line, col)
    if kind == "s" and type(data[3]) in _KEPT:
        return _Node(data[3], line, col, data[4])
    raise ValueError(f"not a node: {kind!r}")


# ---------------------------------------------------------------- nodes → spec


class _Builder:
    def __init__(self, source: str):
        self.source = source
        self.positions: dict[str, Loc] = {}

    def fail(self, node: _Node, message: str) -> SpecError:
        return SpecError(message, node.line, node.col, self.source)

    def section(self, node: _Node, path: str, allowed: Mapping[str, str]) -> dict[str, _Node]:
        if not isinstance(node.value, dict):
            raise self.fail(node, f"`{path}` must be a mapping of keys (e.g. `{path}:` followed by indented `key: value` lines)")
        self.positions[path] = Loc(node.line, node.col)
        values = {}
        for key, (key_node, value_node) in node.value.items():
            if key not in allowed:
                raise self.fail(key_node, _unknown_key(path, key, allowed, value_node))
            values[key] = value_node
            self.positions[f"{path}.{key}" if path else key] = Loc(value_node.line, value_node.col)
        return values

    def value(self, values: dict[str, _Node], key: str, kind: str, path: str, default: Any = None,
              required: bool = False, parent: _Node | None = None) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in values:
            if required:
                where = parent or _Node(None, 1, 1)
                raise self.fail(where, f"`{full}` is required")
            return default
        node = values[key]
        if node.value is None:
            if full in NULLABLE:
                return default
            raise self.fail(node, _null_message(full))
        return _typed(self, node, kind, full)


NULLABLE = frozenset({"pod.min_vcpu_count", "pod.min_memory_gb", "pod.python_version", "storage.volume_name",
                      "storage.volume_gb", "budget.max_runtime_minutes"})
"""Keys runpod-deploy documents as `null` by default: an explicit `null` there means "not set"."""


def _null_message(path: str) -> str:
    return (f"`{path}` is null (YAML reads `null`, `~` or nothing after the colon as null); give it a value "
            "or remove the key")


LEGACY_STOP = {"on_success": {True: "delete", False: "preserve"}, "on_failure": {True: "stop", False: "preserve"}}
"""runpod-deploy 0.8.2's mapping of the removed `stop:` booleans onto `lifecycle:`."""


def _unknown_key(path: str, key: str, allowed: Mapping[str, str], node: _Node | None = None) -> str:
    if path == "" and key == "stop":
        return ("`stop:` was removed in runpod-deploy 0.8.3; write "
                f"`lifecycle: {_lifecycle_from_stop(node)}` instead")
    close = close_matches(key, list(allowed), n=1, cutoff=0.6)
    where = f"`{path}`" if path else "the top level"
    hint = f"; did you mean `{close[0]}`?" if close else f"; expected one of: {', '.join(allowed)}"
    return f"unknown key `{key}` in {where}{hint}"


def _lifecycle_from_stop(node: _Node | None) -> str:
    """The `lifecycle:` block meaning what the user's `stop:` booleans meant (defaults for the rest)."""
    given = node.value if node is not None and isinstance(node.value, dict) else {}
    if node is not None and isinstance(node.value, bool):  # `stop: true` set both
        given = {k: (None, node) for k in LEGACY_STOP}
    actions = {"on_success": "delete", "on_failure": "stop"}
    for key, mapping in LEGACY_STOP.items():
        value = given.get(key, (None, None))[1]
        if value is not None and isinstance(value.value, bool):
            actions[key] = mapping[value.value]
    return f"{{on_success: {actions['on_success']}, on_failure: {actions['on_failure']}}}"


def _typed(b: _Builder, node: _Node, kind: str, path: str) -> Any:
    v = node.value
    if kind == "str":
        if not isinstance(v, str):
            raise b.fail(node, f"`{path}` must be a string, got {_describe(v)}" + _quote_hint(node))
        return v
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise b.fail(node, f"`{path}` must be a whole number, got {_describe(v)}")
        return v
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise b.fail(node, f"`{path}` must be a number, got {_describe(v)}")
        if not math.isfinite(v):
            raise b.fail(node, f"`{path}` must be a finite number, got {node.raw}")
        return float(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise b.fail(node, f"`{path}` must be true or false, got {_describe(v)}")
        return v
    if kind == "list[str]":
        if not isinstance(v, list) or not all(isinstance(i.value, str) for i in v):
            raise b.fail(node, f"`{path}` must be a list of strings" + (
                f", got {_describe(v)}" if not isinstance(v, list) else ""))
        return tuple(i.value for i in v)
    if kind == "map[str]":
        if not isinstance(v, dict):
            raise b.fail(node, f"`{path}` must be a mapping of NAME: value")
        out = []
        for key, (key_node, value_node) in v.items():
            if not IDENT_RE.match(key):
                raise b.fail(key_node, f"`{path}` key `{key}` must be a valid environment variable name")
            out.append((key, _typed(b, value_node, "str", f"{path}.{key}")))
        return tuple(out)
    raise AssertionError(kind)


def _describe(v: Any) -> str:
    if isinstance(v, _Node):
        v = v.value
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return f"{type(v).__name__} {v!r}"


def _quote_hint(node: _Node) -> str:
    v = node.value
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f' (YAML read a number; quote it: "{node.raw}")'
    return ""


def _positive(b: _Builder, values: dict[str, _Node], path: str, **fields: Any) -> None:
    for key, value in fields.items():
        if value is not None and value <= 0:
            raise b.fail(values[key], f"`{path}.{key}` must be > 0, got {value}")


def _section(b: _Builder, root: dict[str, _Node], name: str, cls: type) -> tuple[Any, dict[str, _Node]]:
    """The section as `cls` (its defaults when absent) and the nodes of the keys given."""
    if name not in root or root[name].value is None:
        return cls(), {}
    allowed = schema.SECTIONS[name]
    values = b.section(root[name], name, allowed)
    kwargs = {k: b.value(values, k, allowed[k], name) for k in values}
    return cls(**{k: v for k, v in kwargs.items() if v is not None}), values


def _pod(b: _Builder, root: dict[str, _Node]) -> PodSpec:
    pod, values = _section(b, root, "pod", PodSpec)
    if "python_version" in values:
        node = values["python_version"]
        if not PYTHON_VERSION_RE.match(pod.python_version or ""):
            raise b.fail(node, f"`pod.python_version` must look like \"3.13\" (minor pin) or "
                         f"\"3.13.5\" (exact pin), got {pod.python_version!r}")
    for key in ("datacenters", "gpu_order"):
        if key in values and not getattr(pod, key):
            raise b.fail(values[key], f"`pod.{key}` must list at least one entry")
    if "image" in values and not pod.image.strip():
        raise b.fail(values["image"], "`pod.image` must not be empty")
    _positive(b, values, "pod", container_disk_gb=pod.container_disk_gb, gpu_count=pod.gpu_count,
              min_vcpu_count=pod.min_vcpu_count, min_memory_gb=pod.min_memory_gb)
    if pod.cloud_type.upper() in schema.CLOUD_TYPES and pod.cloud_type not in schema.CLOUD_TYPES:
        pod = replace(pod, cloud_type=pod.cloud_type.upper())  # runpod-deploy passes it on as written
    if pod.cloud_type not in schema.CLOUD_TYPES:
        raise b.fail(values["cloud_type"], f"`pod.cloud_type` must be SECURE or COMMUNITY, got {pod.cloud_type!r}")
    return pod


def _storage(b: _Builder, root: dict[str, _Node]) -> StorageSpec:
    storage, values = _section(b, root, "storage", StorageSpec)
    if storage.mode not in schema.STORAGE_MODES:
        node = values.get("mode", root["storage"])
        raise b.fail(node, f"`storage.mode` must be ephemeral or network_volume, got {storage.mode!r}")
    if not storage.volume_mount.startswith("/"):
        raise b.fail(values["volume_mount"], "`storage.volume_mount` must be an absolute path (start with /)")
    if storage.mode == "network_volume" and not storage.volume_name:
        raise b.fail(root["storage"], "`storage.volume_name` is required when mode is network_volume")
    _positive(b, values, "storage", volume_gb=storage.volume_gb)
    if storage.mode == "ephemeral" and storage.volume_gb is None:
        storage = StorageSpec(storage.mode, storage.volume_mount, storage.volume_name, 20)
    return storage


def _budget(b: _Builder, root: dict[str, _Node]) -> BudgetSpec:
    budget, values = _section(b, root, "budget", BudgetSpec)
    _positive(b, values, "budget", cost_cap_usd=budget.cost_cap_usd,
              assumed_hourly_rate_usd=budget.assumed_hourly_rate_usd,
              max_runtime_minutes=budget.max_runtime_minutes, poll_interval_sec=budget.poll_interval_sec,
              ssh_ready_timeout_sec=budget.ssh_ready_timeout_sec)
    return budget


def _lifecycle(b: _Builder, root: dict[str, _Node]) -> LifecycleSpec:
    lc, values = _section(b, root, "lifecycle", LifecycleSpec)
    if lc.on_success not in schema.LIFECYCLE_ON_SUCCESS:
        raise b.fail(values["on_success"], f"`lifecycle.on_success` must be one of "
                     f"{', '.join(schema.LIFECYCLE_ON_SUCCESS)}, got {lc.on_success!r}")
    if lc.on_failure == "recycle":
        raise b.fail(values["on_failure"], "lifecycle.on_failure cannot be 'recycle' (a failed pod is "
                     "not reused); use stop, delete or preserve")
    if lc.on_failure not in schema.LIFECYCLE_ON_FAILURE:
        raise b.fail(values["on_failure"], f"`lifecycle.on_failure` must be one of "
                     f"{', '.join(schema.LIFECYCLE_ON_FAILURE)}, got {lc.on_failure!r}")
    return lc


def _telemetry(b: _Builder, root: dict[str, _Node]) -> TelemetrySpec:
    t, values = _section(b, root, "telemetry", TelemetrySpec)
    if t.sample_interval_sec < 5:
        raise b.fail(values["sample_interval_sec"],
                     f"`telemetry.sample_interval_sec` must be ≥ 5 (seconds), got {t.sample_interval_sec}")
    return t


def _simple(b: _Builder, root: dict[str, _Node], name: str, cls: type) -> Any:
    return _section(b, root, name, cls)[0]


def _items(b: _Builder, root: dict[str, _Node], name: str) -> list[tuple[str, dict[str, _Node], _Node]]:
    if name not in root:
        return []
    node = root[name]
    if node.value is None:
        raise b.fail(node, _null_message(name) + f" (`{name}: []` for none)")
    if not isinstance(node.value, list):
        raise b.fail(node, f"`{name}` must be a list (each item starting with `- `)")
    b.positions[name] = Loc(node.line, node.col)
    out = []
    for i, item in enumerate(node.value):
        path = f"{name}[{i}]"
        out.append((path, b.section(item, path, schema.SECTIONS[name]), item))
    return out


def _commands(b: _Builder, root: dict[str, _Node], name: str) -> tuple[CommandSpec, ...]:
    out = []
    for path, values, item in _items(b, root, name):
        cmd = CommandSpec(
            command=b.value(values, "command", "str", path, required=True, parent=item),
            timeout_sec=b.value(values, "timeout_sec", "int", path, 600),
            with_env=b.value(values, "with_env", "bool", path, False),
        )
        if not cmd.command.strip():
            raise b.fail(values["command"], f"`{path}.command` must not be blank")
        _positive(b, values, path, timeout_sec=cmd.timeout_sec)
        out.append(cmd)
    return tuple(out)


def _fields(b: _Builder, section: str, path: str, values: dict[str, _Node], item: _Node,
            required: tuple[str, ...]) -> dict[str, Any]:
    """The typed fields of one list item, with its required ones present and non-empty."""
    kw = {k: b.value(values, k, kind, path) for k, kind in schema.SECTIONS[section].items() if k in values}
    for req in required:
        if not kw.get(req):
            raise b.fail(values.get(req, item), f"`{path}.{req}` is required and must not be empty")
    return kw


def _staging(b: _Builder, root: dict[str, _Node]) -> tuple[StagingSpec, ...] | None:
    if "staging" not in root:
        return None
    return tuple(StagingSpec(**_fields(b, "staging", path, values, item, ("label", "source", "destination")))
                 for path, values, item in _items(b, root, "staging"))


def _secrets(b: _Builder, root: dict[str, _Node]) -> tuple[SecretSpec, ...]:
    out = []
    for path, values, item in _items(b, root, "secrets"):
        kw = _fields(b, "secrets", path, values, item, ("name", "destination"))
        if bool(kw.get("env")) == bool(kw.get("file")):
            empty = " (`env: []` names no variable)" if "env" in kw and not kw["env"] else ""
            raise b.fail(item, f"`{path}` needs exactly one of `env: [VAR, ...]` or `file: PATH`{empty}")
        dest = kw["destination"]
        if not (dest.startswith("/") or dest.startswith("{")):
            raise b.fail(values["destination"], f"`{path}.destination` must be an absolute pod path (or start "
                         f"with a template such as {{volume_mount}}), got {dest!r}; e.g. /workspace/secrets/env")
        for var in kw.get("env", ()):
            if not IDENT_RE.match(var):
                raise b.fail(values["env"], f"`{path}.env` entry {var!r} is not a valid environment variable name")
        if "mode" in kw and not MODE_RE.match(kw["mode"]):
            raise b.fail(values["mode"], f"`{path}.mode` must be an octal string like \"0600\", got {kw['mode']!r}")
        out.append(SecretSpec(**kw))
    return tuple(out)


def _artifacts(b: _Builder, root: dict[str, _Node]) -> tuple[ArtifactSpec, ...]:
    return tuple(ArtifactSpec(**_fields(b, "artifacts", path, values, item, ("label", "remote_path", "local_path")))
                 for path, values, item in _items(b, root, "artifacts"))


def _run(b: _Builder, root: dict[str, _Node], top: _Node) -> RunSpec:
    if "run" not in root or root["run"].value is None:
        raise b.fail(top, "`run` is required: the script to run on the pod (e.g. `run: python train.py`)")
    node = root["run"]
    if not isinstance(node.value, (str, dict)):
        raise b.fail(node, f"`run` must be the script text or a mapping with `body:`, got {_describe(node.value)}"
                     + _quote_hint(node) + (f' (YAML read a boolean; quote it: "{node.raw}")'
                                            if isinstance(node.value, bool) else ""))
    if isinstance(node.value, str):
        b.positions["run"] = b.positions["run.body"] = Loc(node.line, node.col)
        body = node.value
        values = {"body": node}
    else:
        values = b.section(node, "run", schema.SECTIONS["run"])
        kw = {k: b.value(values, k, kind, "run") for k, kind in schema.SECTIONS["run"].items() if k in values}
        body = kw.get("body")
        if body is None:
            raise b.fail(node, "`run.body` is required: the script to run on the pod")
        run = RunSpec(**kw)
        if run.success_marker is not None and not run.success_marker.strip():
            raise b.fail(values["success_marker"], "`run.success_marker` must not be empty")
        for key in ("script_path", "log_path"):
            value = kw.get(key)
            if value is not None and not (value.startswith("/") or value.startswith("{")):
                raise b.fail(values[key], f"`run.{key}` must be an absolute pod path (or start with a template)")
    if not body.strip():
        raise b.fail(values["body"], "`run` body is blank: give the commands to run")
    return RunSpec(body=body) if isinstance(node.value, str) else run


def _variables(b: _Builder, root: dict[str, _Node]) -> tuple[tuple[str, str], ...]:
    if "variables" not in root or root["variables"].value is None:
        return ()
    node = root["variables"]
    if not isinstance(node.value, dict):
        raise b.fail(node, "`variables` must be a mapping of NAME: value")
    out = []
    for key, (key_node, value_node) in node.value.items():
        if not IDENT_RE.match(key):
            raise b.fail(key_node, f"variable name `{key}` must be an identifier (letters, digits, _)")
        if key in schema.BUILTIN_VARIABLES:
            raise b.fail(key_node, f"`{key}` is a built-in variable and cannot be redefined")
        value = value_node.value
        if value is None:
            raise b.fail(value_node, _null_message(f"variables.{key}"))
        if not isinstance(value, str):  # runpod-deploy: values must already be strings
            raise b.fail(value_node, f"variable `{key}` must be a string, got {_describe(value)}" + _quote_hint(value_node))
        b.positions[f"variables.{key}"] = Loc(value_node.line, value_node.col)
        out.append((key, str(value)))
    return tuple(out)


def parse(text: str, *, source: str = "cell", line_offset: int = 0, nodes: _Node | None = None) -> JobSpec:
    """Parse and validate a `%%pod` cell body or a runpod-deploy YAML file.

    `line_offset` shifts reported lines (a cell's body starts after the
    `%%pod` line, so the magic passes 1). `nodes`: what `compose(text, line_offset=...)` gave
    (kept from an earlier parse); everything they say is validated as if just composed.
    """
    top = nodes if nodes is not None else compose(text, source=source, line_offset=line_offset)
    first = _Node(None, 1 + line_offset, 1)
    if top is None:
        raise SpecError("the spec is empty: a %%pod cell needs at least `run:` (and usually `pod:`)",
                        first.line, 1, source)
    b = _Builder(source)
    root = b.section(top, "", schema.ROOT) if isinstance(top.value, dict) else None
    if root is None:
        raise b.fail(top, f"the spec must be a mapping of keys (name:, pod:, run:, ...), got {_describe(top.value)}")
    version = b.value(root, "schema_version", "int", "", 2)
    if version != 2:
        raise b.fail(root["schema_version"], f"schema_version must be 2, got {version} (v1 configs: see "
                     "runpod-deploy's MIGRATION.md)")
    name = b.value(root, "name", "str", "")
    if name is not None and not name.strip():
        raise b.fail(root["name"], "`name` must not be empty")
    return JobSpec(
        text=text,
        source=source,
        name=name,
        run_id_prefix=b.value(root, "run_id_prefix", "str", ""),
        state_file=b.value(root, "state_file", "str", ""),
        local=_simple(b, root, "local", LocalSpec),
        pod=_pod(b, root),
        storage=_storage(b, root),
        ssh=_simple(b, root, "ssh", SshSpec),
        budget=_budget(b, root),
        remote_env=_simple(b, root, "remote_env", RemoteEnvSpec),
        setup=_commands(b, root, "setup"),
        preflight=_commands(b, root, "preflight"),
        staging=_staging(b, root),
        secrets=_secrets(b, root),
        run=_run(b, root, first),
        artifacts=_artifacts(b, root),
        lifecycle=_lifecycle(b, root),
        telemetry=_telemetry(b, root),
        variables=_variables(b, root),
        line_offset=line_offset,
        positions=b.positions,
    )


def decode(data: bytes, *, source: str = "cell", line_offset: int = 0) -> str:
    """Raw bytes → text; non-UTF-8 input is an error with its position."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1 + line_offset
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(f"the spec is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8",
                        line, col, source) from None
