"""The pod-side guard: armed as soon as SSH is up, it terminates the pod when the client is gone.

The launcher's watchdog covers the run phase only; a client killed during setup, staging, the
pulls or teardown would leave the pod billing. So right after SSH comes up, the backend starts
a small detached loop on the pod (`guard.sh` under `$HOME/.podmagic-guard/`) and a thread on
this side touches its heartbeat every few seconds for as long as the pod is held. When the
heartbeat is older than the limit (`PODMAGIC_HEARTBEAT_TIMEOUT_SEC`, 600 s by default; 0: no
guard), the guard terminates the pod through REST v2 with the pod's own `RUNPOD_API_KEY`
(from /etc/rp_environment: SSH sessions do not get the container's environment). Before it is
armed it asks the API once for its own pod with that key and records the HTTP status, which the
`pod_guard_armed` event reports (200: it can terminate the pod; anything else: it cannot, and the
client's own teardown is the only safeguard). `disarm` stops it (a preserved pod keeps running).

May import `backends.ssh`; never `run` or `ui`.
"""

from __future__ import annotations

import os
import shlex
import threading
from typing import Callable

q = shlex.quote
DIR = "$HOME/.podmagic-guard"
DEFAULT_TIMEOUT_SEC = 600.0


def timeout_sec() -> float:
    """The same knob as the run's heartbeat limit (the runner reads it too)."""
    try:
        return float(os.environ.get("PODMAGIC_HEARTBEAT_TIMEOUT_SEC", DEFAULT_TIMEOUT_SEC))
    except ValueError:
        return DEFAULT_TIMEOUT_SEC


def guard_script(pod_id: str, env_file: str, timeout: float, interval: float, terminate: str) -> str:
    t, i = max(1, int(round(timeout))), max(interval, 0.2)
    return "\n".join([
        "#!/usr/bin/env bash",
        "# podmagic pod guard (generated): terminates this pod when the client's heartbeat stops.",
        'd="$(cd "$(dirname "$0")" && pwd)"',
        f"[ -r {q(env_file)} ] && . {q(env_file)}",
        "while true; do",
        f"  sleep {i:g}",
        '  [ -f "$d/disarmed" ] && exit 0',
        '  now=$(date +%s); last=$(stat -c %Y "$d/heartbeat" 2>/dev/null || echo "$now")',
        f'  if [ $(( now - last )) -ge {t} ]; then',
        '    echo "heartbeat stale for $(( now - last ))s" > "$d/fired"',
        f"    {terminate}",
        "    exit 0",
        "  fi",
        "done",
    ]) + "\n"


def arm_command(pod_id: str, env_file: str, script: str) -> str:
    """Write and start the guard; print `HOME|api-status` (the pod key's one check of the API)."""
    check = (f'"${{RUNPOD_API_BASE_URL:-https://api.runpod.io}}/v2/pods/${{RUNPOD_POD_ID:-{pod_id}}}"')
    return "\n".join([
        f'd="{DIR}"; mkdir -p "$d" && rm -f "$d/disarmed" "$d/fired" && touch "$d/heartbeat"',
        f"cat > \"$d/guard.sh\" <<'PODMAGIC_GUARD'\n{script}PODMAGIC_GUARD",
        f"code=$( ( [ -r {q(env_file)} ] && . {q(env_file)}; curl -s -o /dev/null -w '%{{http_code}}' -m 20 "
        f'-H "Authorization: Bearer ${{RUNPOD_API_KEY:-}}" {check} ) 2>/dev/null )',
        'echo "${code:-000}" > "$d/api_check"',
        '[ -f "$d/pid" ] && kill "$(cat "$d/pid")" 2>/dev/null',
        'setsid nohup bash "$d/guard.sh" > "$d/guard.log" 2>&1 < /dev/null & echo $! > "$d/pid"',
        'printf "%s|%s\\n" "$HOME" "${code:-000}"',
    ])


class Heartbeat:
    """A daemon thread touching the guard's heartbeat over the pod's SSH link."""

    def __init__(self, touch: Callable[[], None], every_sec: float):
        self.touch, self.every_sec = touch, every_sec
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="podmagic-guard-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_sec):
            try:
                self.touch()
            except Exception:  # noqa: BLE001 - a dropped link heals elsewhere; the guard waits long enough
                pass

    def stop(self) -> None:
        self._stop.set()
