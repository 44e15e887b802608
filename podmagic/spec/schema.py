"""The `%%pod` YAML vocabulary as data: every key, its type and default.

One table serves the spec parser (unknown keys, did-you-mean, types) and the
JupyterLab extension (which marks unknown keys as the user types): run
`python -m podmagic.spec.schema` to print it as JSON. It is runpod-deploy's
schema_version 2, key for key, plus the notebook conveniences of DESIGN.md.
"""

from __future__ import annotations

import json

# A key's kind: "str", "int", "float", "bool", "list[str]", "map[str]",
# "section" (a mapping described by SECTIONS), "list[section]" (a list of such
# mappings), "run" (a string or the `run` section), "variables".
ROOT: dict[str, str] = {
    "schema_version": "int",
    "name": "str",
    "run_id_prefix": "str",
    "state_file": "str",
    "local": "section",
    "pod": "section",
    "storage": "section",
    "ssh": "section",
    "budget": "section",
    "remote_env": "section",
    "setup": "list[section]",
    "preflight": "list[section]",
    "staging": "list[section]",
    "secrets": "list[section]",
    "run": "run",
    "artifacts": "list[section]",
    "lifecycle": "section",
    "telemetry": "section",
    "variables": "variables",
}

SECTIONS: dict[str, dict[str, str]] = {
    "local": {"project_root": "str", "required_paths": "list[str]"},
    "pod": {
        "image": "str",
        "datacenters": "list[str]",
        "gpu_order": "list[str]",
        "cloud_type": "str",
        "ports": "list[str]",
        "container_disk_gb": "int",
        "gpu_count": "int",
        "spot": "bool",
        "min_vcpu_count": "int",
        "min_memory_gb": "int",
        "python_version": "str",
    },
    "storage": {"mode": "str", "volume_mount": "str", "volume_name": "str", "volume_gb": "int"},
    "ssh": {"key_path": "str"},
    "budget": {
        "cost_cap_usd": "float",
        "assumed_hourly_rate_usd": "float",
        "max_runtime_minutes": "int",
        "poll_interval_sec": "int",
        "ssh_ready_timeout_sec": "int",
    },
    "remote_env": {"source_files": "list[str]", "exports": "map[str]"},
    "setup": {"command": "str", "timeout_sec": "int", "with_env": "bool"},
    "preflight": {"command": "str", "timeout_sec": "int", "with_env": "bool"},
    "staging": {
        "label": "str",
        "source": "str",
        "destination": "str",
        "excludes": "list[str]",
        "excludes_default": "bool",
        "excludes_extra": "list[str]",
        "delete": "bool",
    },
    "secrets": {"name": "str", "destination": "str", "env": "list[str]", "file": "str", "mode": "str"},
    "run": {
        "script_path": "str",
        "log_path": "str",
        "success_marker": "str",
        "failure_markers": "list[str]",
        "body": "str",
    },
    "artifacts": {
        "label": "str",
        "remote_path": "str",
        "local_path": "str",
        "required": "bool",
        "excludes": "list[str]",
        "delete": "bool",
    },
    "lifecycle": {"on_success": "str", "on_failure": "str"},
    "telemetry": {
        "enabled": "bool",
        "sample_interval_sec": "int",
        "capture_nvidia_smi": "bool",
        "capture_dmesg": "bool",
        "capture_pod_describe": "bool",
        "capture_remote_env": "bool",
        "capture_local_git": "bool",
        "capture_payload_lockfile": "bool",
    },
}

DEFAULT_STAGING_EXCLUDES = (
    ".git/",
    ".venv/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".mypy_cache/",
    "**/__pycache__/",
    "**/*.pyc",
)
LIFECYCLE_ON_SUCCESS = ("preserve", "stop", "delete", "recycle")
LIFECYCLE_ON_FAILURE = ("preserve", "stop", "delete")
STORAGE_MODES = ("ephemeral", "network_volume")
CLOUD_TYPES = ("SECURE", "COMMUNITY")
BUILTIN_VARIABLES = ("config_dir", "project_root", "run_dir", "run_id", "job_name", "volume_mount")


def as_json() -> dict:
    """The schema as one JSON-able document (what the labextension reads)."""
    return {"root": ROOT, "sections": SECTIONS, "builtin_variables": list(BUILTIN_VARIABLES)}


if __name__ == "__main__":
    print(json.dumps(as_json(), indent=2))
