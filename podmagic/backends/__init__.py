"""backends: where a pod comes from. `base` is the seam (the `Pod` and `Backend` protocols);
`local` (a sandbox on this machine), `ssh/` (any host), `runpod/` (RunPod's control plane, then
ssh), and `podside` (the pod-side shell: launcher and watchdog).

May import `plan` data (`plan.requests`), `podmagic.errors` and each other; never `run` or `ui`.
Backends return data; they write no run-directory files. Resolved by name, imported lazily.
"""

from __future__ import annotations

from podmagic.errors import PodmagicError

BACKENDS = ("local", "ssh", "runpod")


def get_backend(name: str, **options):
    """The backend called `name`, configured by `options` (e.g. host=...)."""
    if name == "local":
        from podmagic.backends.local import LocalBackend

        return LocalBackend(**options)
    if name == "ssh":
        from podmagic.backends.ssh.backend import SSHBackend

        return SSHBackend(**options)
    if name == "runpod":
        from podmagic.backends.runpod.backend import RunPodBackend

        return RunPodBackend(**options)
    raise PodmagicError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
