"""The client-side sentinel: it covers the window from a pod's create call until the pod-side
guard is armed (SSH up), when nothing on the pod can end it.

`Sentinel.start(api, name)` spawns `python -m podmagic.backends.runpod.sentinel NAME` in a session
of its own, holding the write end of a pipe to it; `watch(pod_id)` reports a pod as soon as it
exists; `release()` says the pod is accounted for (its own guard, or the backend's teardown, has
it) and the sentinel exits. If the client dies first (`kill -9`, a crash, a closed terminal), the
pipe closes with no release: the sentinel terminates the pods it was told of and, since a create
whose answer was lost still made a pod, any pod of that name that appears in the listing within
`LOST_CREATE_SEC`. The key travels in the child's environment, never on its command line.

May import `backends.runpod.api` and the standard library; never `run` or `ui`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from podmagic.backends.runpod.api import RunPodAPI, base_url

LOST_CREATE_SEC = 30.0
"""How long the listing may lag a create (the backend's own lost-create window)."""


class Sentinel:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls, api: RunPodAPI, name: str) -> "Sentinel":
        env = {**os.environ, "RUNPOD_API_KEY": api.api_key, "RUNPOD_API_BASE_URL": base_url()}
        proc = subprocess.Popen([sys.executable, "-m", "podmagic.backends.runpod.sentinel", name], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # a Ctrl-C or SIGHUP to the client's group spares it
        return cls(proc)

    def _say(self, line: str) -> None:
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):  # it is gone already: nothing to tell
            pass

    def watch(self, pod_id: str) -> None:
        self._say(f"pod {pod_id}")

    def release(self) -> None:
        self._say("ok")
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()


def _end(api: RunPodAPI, name: str, pod_ids: set[str]) -> None:
    """The client died holding billing pods: terminate them, and the name's pods as they appear."""
    for pod_id in pod_ids:
        api.terminate(pod_id)
    deadline = time.monotonic() + LOST_CREATE_SEC
    while time.monotonic() < deadline:
        found = [p["id"] for p in api.find_by_name(name) if p.get("desiredStatus") != "TERMINATED"]
        for pod_id in found:
            api.terminate(pod_id)
        if pod_ids and not found:
            return  # the pod it knew of is gone and the listing shows no other
        pod_ids.update(found)
        time.sleep(2.0)


def main(argv: list[str]) -> int:
    name, pod_ids = argv[0], set()
    for line in sys.stdin:
        word, _, rest = line.strip().partition(" ")
        if word == "ok":
            return 0
        if word == "pod" and rest:
            pod_ids.add(rest)
    _end(RunPodAPI(os.environ["RUNPOD_API_KEY"]), name, pod_ids)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
