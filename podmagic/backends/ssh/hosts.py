"""Which machine `--host NAME` means: `user@host:port` or an ~/.ssh/config alias.

`resolve_target` reads the OpenSSH client config with paramiko's `SSHConfig`
(HostName, User, Port, IdentityFile) and returns a plain `SSHTarget`.
The user defaults to `root` (runpod-deploy's rule: `root@<host>` unless the
name carries a user), the port to 22. paramiko is imported only when a
config file is actually read.
"""

from __future__ import annotations

import os
from pathlib import Path

from podmagic.errors import BackendError
from podmagic.records import record

DEFAULT_USER = "root"
DEFAULT_CONFIG = "~/.ssh/config"


@record
class SSHTarget:
    """One resolved SSH destination."""

    host: str
    port: int = 22
    user: str = DEFAULT_USER
    key_paths: tuple[str, ...] = ()
    alias: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH (and paramiko) name this host in a known_hosts file."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@record
class _Parsed:
    host: str
    user: str | None
    port: int | None


def parse_host_spec(name: str) -> _Parsed:
    """Split `[user@]host[:port]`; `[v6addr]:port` is accepted too."""
    name = name.strip()
    if not name:
        raise BackendError("empty SSH host")
    user, _, rest = name.rpartition("@")
    port: int | None = None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = _port(tail[1:], name)
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        port = _port(port_text, name)
    else:
        host = rest
    if not host:
        raise BackendError(f"no host name in {name!r}")
    return _Parsed(host, user or None, port)


def _port(text: str, name: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BackendError(f"bad port in SSH host {name!r}: {text!r}")
    return int(text)


def resolve_target(name: str, *, config_path: str | Path | None = None,
                   key_path: str | None = None) -> SSHTarget:
    """`name` resolved through the ssh config; explicit user/port in `name` win."""
    parsed = parse_host_spec(name)
    entry = _lookup(parsed.host, config_path)
    host = entry.get("hostname", parsed.host)
    user = parsed.user or entry.get("user") or DEFAULT_USER
    port = parsed.port or int(entry.get("port", 22))
    keys = [os.path.expanduser(k) for k in entry.get("identityfile", [])]
    if key_path:
        keys.append(os.path.expanduser(key_path))
    alias = parsed.host if host != parsed.host else None
    return SSHTarget(host=host, port=port, user=user, key_paths=tuple(dict.fromkeys(keys)), alias=alias)


def _lookup(host: str, config_path: str | Path | None) -> dict:
    path = Path(os.path.expanduser(str(config_path or DEFAULT_CONFIG)))
    if not path.is_file():
        return {}
    import paramiko

    config = paramiko.SSHConfig.from_path(str(path))
    entry = dict(config.lookup(host))
    if entry.get("hostname") == host:
        entry.pop("hostname")
    return entry
