"""Backends: where a pod comes from. Resolved by name, imported lazily."""

from __future__ import annotations

BACKENDS = ("local", "ssh", "runpod")


def get_backend(name: str, **options):
    """The backend called `name`, configured by `options` (e.g. host=...)."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(**options)
    if name == "ssh":
        from .ssh import SSHBackend

        return SSHBackend(**options)
    if name == "runpod":
        from .runpod import RunPodBackend

        return RunPodBackend(**options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
