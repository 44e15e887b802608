"""podmagic's own known-hosts file: trust on first use, refuse a changed key.

The file (default `~/.config/podmagic/known_hosts`, OpenSSH format) is never
the user's `~/.ssh/known_hosts`, so podmagic neither trusts nor pollutes it.
An unknown host's key is recorded the first time it is seen; a host whose
key differs from the recorded one is refused with `HostKeyChanged`, whose
message says how to proceed. There is no silent auto-add of changed keys.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Callable

from podmagic.backends.base import BackendError
from podmagic.records import record

DEFAULT_KNOWN_HOSTS = "~/.config/podmagic/known_hosts"


class HostKeyChanged(BackendError):
    """The server presented a key other than the one recorded for it."""


@record
class HostKeySeen:
    """A host key trusted on first use (for an event, never a secret)."""

    name: str
    key_type: str
    fingerprint: str
    path: str


def fingerprint(key_bytes: bytes) -> str:
    """OpenSSH-style `SHA256:...` fingerprint of a public key blob."""
    digest = hashlib.sha256(key_bytes).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_path(path: str | Path | None = None) -> Path:
    return Path(os.path.expanduser(str(path or DEFAULT_KNOWN_HOSTS)))


def recorded_keys(path: Path, name: str) -> dict[str, str]:
    """`{key_type: base64}` recorded for `name` (hashed entries included)."""
    if not path.exists():
        return {}
    import paramiko

    keys = paramiko.HostKeys(str(path)).lookup(name) or {}
    return {kind: key.get_base64() for kind, key in keys.items()}


def record_key(path: Path, name: str, key_type: str, key_b64: str) -> None:
    """Append one `name type base64` line, under a lock, creating the file 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(f"{name} {key_type} {key_b64}\n")


def forget_host(path: str | Path | None, name: str) -> int:
    """Drop every line recorded for `name` (e.g. a deleted pod); returns how many."""
    file = known_hosts_path(path)
    if not file.exists():
        return 0
    lines = file.read_text(encoding="ascii").splitlines(keepends=True)
    kept = [line for line in lines if name not in line.split(" ", 1)[0].split(",")]
    file.write_text("".join(kept), encoding="ascii")
    return len(lines) - len(kept)


def check_server_key(path: Path, name: str, key_type: str, key_bytes: bytes,
                     on_trust: Callable[[HostKeySeen], None] | None = None) -> None:
    """Accept a recorded key, record an unknown one, refuse a changed one."""
    key_b64 = base64.b64encode(key_bytes).decode()
    known = recorded_keys(path, name)
    if known.get(key_type) == key_b64:
        return
    if known:
        raise HostKeyChanged(_changed_message(path, name, key_type, key_bytes))
    record_key(path, name, key_type, key_b64)
    if on_trust:
        on_trust(HostKeySeen(name, key_type, fingerprint(key_bytes), str(path)))


def _changed_message(path: Path, name: str, key_type: str, key_bytes: bytes) -> str:
    return (
        f"host key for {name} has CHANGED: it now presents {key_type} {fingerprint(key_bytes)}, "
        f"which is not the key recorded in {path}. Someone may be intercepting the "
        f"connection, or the host was reinstalled (a new pod on a reused address). "
        f"If you know why it changed, forget the old key with "
        f"`ssh-keygen -R '{name}' -f {path}` and run again; otherwise do not connect."
    )
