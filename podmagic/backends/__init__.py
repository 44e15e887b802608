"""backends: where a pod comes from. `base` is the seam (the `Pod` and `Backend` protocols);
`local` (a sandbox on this machine), `ssh/` (any host), `runpod/` (RunPod's control plane, then
ssh), and `podside` (the pod-side shell: launcher and watchdog).

May import `plan` data (`plan.requests`), `podmagic.errors` and each other; never `run` or `ui`.
Backends return data; they write no run-directory files. Resolved by name, imported lazily.
"""

from __future__ import annotations

import os

from podmagic.errors import BackendError, PodmagicError

BACKENDS = ("local", "ssh", "runpod")

FRONT_END_OPTIONS = {"local": (), "ssh": ("host", "root"), "runpod": ("force_fresh",)}
"""The options front ends (`--host`, `--root`, `--force-fresh`) may pass to each backend."""


def backend_class(name: str) -> type:
    """The backend class called `name` (imported only now: paramiko and httpx stay unloaded)."""
    if name == "local":
        from podmagic.backends.local import LocalBackend

        return LocalBackend
    if name == "ssh":
        from podmagic.backends.ssh.backend import SSHBackend

        return SSHBackend
    if name == "runpod":
        from podmagic.backends.runpod.backend import RunPodBackend

        return RunPodBackend
    raise PodmagicError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def ssh_host(host: str | None) -> str:
    """The ssh backend's host: the option, else PODMAGIC_SSH_HOST; an error naming the fix without one."""
    host = host or os.environ.get("PODMAGIC_SSH_HOST")
    if not host:
        raise BackendError("the ssh backend needs --host USER@HOST[:PORT] (or an ~/.ssh/config alias, or "
                           "PODMAGIC_SSH_HOST)")
    return host


def check_front_end_options(name: str, options: dict) -> dict:
    """The given (truthy) front-end options, refused by name when they do not apply to `name`."""
    if name not in FRONT_END_OPTIONS:
        raise PodmagicError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    given = {k: v for k, v in options.items() if v}
    for key in given:
        if key not in FRONT_END_OPTIONS[name]:
            users = [b for b, keys in FRONT_END_OPTIONS.items() if key in keys]
            flag = "--" + key.replace("_", "-")
            raise PodmagicError(f"{flag} does not apply to the {name} backend (it is for: {', '.join(users)})")
    return given


def _parameters(cls: type) -> tuple[str, ...]:
    """The names `cls(...)` takes, from its `__init__`'s code (`inspect.signature` imports 10 ms of modules)."""
    code = cls.__init__.__code__
    return code.co_varnames[1:code.co_argcount + code.co_kwonlyargcount]


def get_backend(name: str, **options):
    """The backend called `name`, configured by `options`; an option it does not take is an error."""
    cls = backend_class(name)
    accepted = _parameters(cls)
    for key in options:
        if key not in accepted:
            raise PodmagicError(f"the {name} backend has no option {key!r} (it takes: {', '.join(accepted)})")
    return cls(**options)
