"""Making sure uv is on the pod before the pin: found, copied from this machine, or pip-installed.

Older RunPod images (the seed's `runpod/pytorch:2.4.0`) have python3 but no uv; newer ones
keep it in `~/.local/bin`, which SSH commands get on PATH from the pod wrapper. When `uv` is
still missing, podmagic installs it into `$HOME/.local/bin`:

1. `copied`: when the pod's OS and architecture match this machine's, the uv binary of the
   `uv` wheel podmagic depends on is copied over (no network needed on the pod);
2. `pip`: otherwise with the pod's own Python, `python3 -m pip install uv`.

The outcome (`present`, `copied`, `pip`, or None when neither worked) and `uv --version` go
into the pod's `PodInfo` (`uv_source`, `uv_version`), hence the manifest. A failure here is not
fatal: the pin step then fails with its own explanation.

May import `backends.base` and `backends.ssh`; never `run` or `ui`.
"""

from __future__ import annotations

import platform
import re
import shlex
from pathlib import Path
from typing import Callable

from podmagic.backends.base import PodInfo
from podmagic.records import replace

q = shlex.quote
PROBE = 'printf "%s|%s|%s|" "$(uname -s)" "$(uname -m)" "$HOME"; uv --version 2>/dev/null || true'
VERSION = re.compile(r"uv (\d+\.\d+\.\d+\S*)")


def local_uv() -> Path | None:
    try:
        from uv import find_uv_bin

        return Path(find_uv_bin())
    except Exception:  # noqa: BLE001 - no uv wheel: copying is not an option
        return None


def ensure_uv(pod, emit: Callable[..., None]) -> PodInfo:
    """uv on the pod (installing it if needed); the pod's info with `uv_version` and `uv_source`."""
    system, machine, home, version = _probe(pod)
    if version:
        return _done(pod, version, "present", emit, announce=False)
    binary = local_uv()
    if binary is not None and (system, machine) == (platform.system(), platform.machine()) and home:
        target = f"{home}/.local/bin/uv"
        try:
            pod.put_executable(binary, target)
            version = _probe(pod)[3]
        except Exception as exc:  # noqa: BLE001 - fall back to pip
            emit("warning", message=f"copying uv to the pod failed ({exc}); trying python3 -m pip install uv")
        if version:
            return _done(pod, version, "copied", emit)
    result = pod.run("python3 -m pip install -q uv 2>&1 | tail -n 3", timeout=300)
    version = _probe(pod)[3]
    if version:
        return _done(pod, version, "pip", emit)
    emit("warning", message="uv is not on the pod and could not be installed (no matching uv binary to copy, "
                            f"and `python3 -m pip install uv` failed: {result.output.strip()[-200:]})")
    return pod.info


def _probe(pod) -> tuple[str, str, str, str | None]:
    out = pod.run(PROBE, timeout=60).output.strip()
    parts = out.split("|", 3)
    if len(parts) < 4:
        return "", "", "", None
    found = VERSION.search(parts[3])
    return parts[0], parts[1], parts[2], found.group(1) if found else None


def _done(pod, version: str, source: str, emit, announce: bool = True) -> PodInfo:
    if announce:
        emit("uv_installed", version=version, source=source)
    pod.info = replace(pod.info, uv_version=version, uv_source=source)
    return pod.info
