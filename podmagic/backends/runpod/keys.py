"""Making sure the user's public key reaches the pod, before anything is spent.

RunPod puts keys on a pod in one way: the `PUBLIC_KEY` environment variable, which RunPod
images' start.sh appends to `~/.ssh/authorized_keys` before starting sshd (runpod/containers).
`startSsh: true` fills it with the account's registered keys (`PodSsh` and `CreatePodRequest.startSsh`
in the REST v2 document), and only with the keys registered when the pod is created; a create that
already sets `PUBLIC_KEY` keeps its own. So: when the user's key is registered, `startSsh` is
enough; when it is not, podmagic sends `PUBLIC_KEY` with the account's keys plus the user's.
Without a public key for `ssh.key_path` there is nothing to send, and the run is refused.

May import `backends.runpod.api`; paramiko only to derive a missing `.pub`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from podmagic.backends.base import BackendError
from podmagic.backends.runpod.api import ApiError, RunPodAPI


def local_public_key(key_path: str | Path) -> str | None:
    """`<type> <base64>` of the key pair at `key_path` (its `.pub`, else derived from the private key)."""
    path = Path(key_path).expanduser()
    try:
        parts = Path(f"{path}.pub").read_text().split()
        if len(parts) >= 2:
            return f"{parts[0]} {parts[1]}"
    except OSError:
        pass
    try:
        import paramiko

        key = paramiko.PKey.from_path(str(path))
        return f"{key.get_name()} {key.get_base64()}"
    except Exception:  # noqa: BLE001 - no key, encrypted key, unknown type: all mean "cannot tell"
        return None


def same_key(a: str, b: str) -> bool:
    return a.split()[:2] == b.split()[:2]


def public_key_env(api: RunPodAPI, key_path: str | Path, emit: Callable[..., None]) -> tuple[tuple[str, str], ...]:
    """`()` when the key is registered on the account, else `(("PUBLIC_KEY", keys),)`."""
    mine = local_public_key(key_path)
    if mine is None:
        raise BackendError(
            f"no SSH public key for {key_path}: RunPod authorizes a pod only for the account's registered keys "
            f"or a PUBLIC_KEY given at create, so the pod could not be reached. Fix: create the key pair "
            f"(`ssh-keygen -t ed25519 -f {key_path}`), or write its public half (`ssh-keygen -y -f {key_path} > "
            f"{key_path}.pub`), or point ssh.key_path at your key. Nothing was created")
    try:
        registered = api.ssh_keys()
    except ApiError as exc:
        emit("warning", message=f"could not read the account's SSH keys ({exc}); sending the key as PUBLIC_KEY")
        registered = []
    if any(same_key(k, mine) for k in registered):
        emit("ssh_key_checked", registered=True, via="account")
        return ()
    emit("ssh_key_checked", registered=False, via="PUBLIC_KEY")
    return (("PUBLIC_KEY", "\n".join([*registered, mine])),)
