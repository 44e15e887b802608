"""The system's OpenSSH client, for bulk pulls: a second connection to the host the transport already trusts.

paramiko decrypts in Python-driven steps and copies each byte several times on its way out of a
channel; OpenSSH's `ssh` moves a large file at about twice the rate of `scp` here. A pull of many
bytes (`SSHTransport.stream_out(..., bulk=True)`) runs its command through `ssh` when one is on the
`PATH`, with the same user, port and keys, no user or system configuration (`-F /dev/null`), and host
keys checked strictly against podmagic's own known-hosts file (the transport recorded the key when
it connected). If that `ssh` cannot connect or log in (exit 255 before any byte), the transport goes
on over paramiko and does not try `ssh` again.

May import: the standard library and `podmagic.backends.ssh.hosts`.
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import IO, Callable, TypeVar

from podmagic.backends.ssh.hosts import SSHTarget

T = TypeVar("T")
CIPHERS = ("aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr")
"""AES-GCM first (AES-NI); the rest of OpenSSH's long-standing defaults after it."""
LOGIN_FAILED = 255
"""`ssh`'s own exit status for a connection or login that failed (a remote command's is its own)."""
PIPE_SIZE = 1 << 20
"""The stdout pipe's size (Linux's default most a user may set): fewer, larger reads."""


def client_argv(target: SSHTarget, known_hosts: Path, *, use_agent: bool, connect_timeout_sec: float,
                keepalive_sec: int) -> list[str] | None:
    """`ssh` with every option the transport's own connection has, up to the remote command; None where
    there is no `ssh`, or a path OpenSSH would read otherwise (split on its spaces, `%` tokens expanded)."""
    ssh = shutil.which("ssh")
    keys = [os.path.expanduser(p) for p in target.key_paths]
    if ssh is None or any(c.isspace() or c in "\"'%" for c in str(known_hosts) + "".join(keys)):
        return None
    argv = [ssh, "-F", "/dev/null", "-T", "-x", "-a", "-p", str(target.port), "-l", target.user,
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no", "-o", "ClearAllForwardings=yes",
            "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={max(1, int(connect_timeout_sec))}",
            "-o", f"ServerAliveInterval={max(1, int(keepalive_sec))}", "-o", f"Ciphers={CIPHERS}"]
    for key in keys:
        argv += ["-i", key]
    if not use_agent:
        argv += ["-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes"]
    return argv


class PipeReader(io.RawIOBase):
    """`ssh`'s stdout as a raw stream; `take` gives the next chunk as read, `count` counts the bytes."""

    def __init__(self, fh: IO[bytes]):
        self._fd = fh.fileno()
        self._buffer = bytearray(PIPE_SIZE)
        self.count = 0

    def readable(self) -> bool:
        return True

    def take(self) -> memoryview:
        """The next chunk, valid until the next `take` (one buffer, reused: no fresh pages per read)."""
        n = self.readinto(self._buffer)
        return memoryview(self._buffer)[:n]

    def readinto(self, b) -> int:
        n = os.readv(self._fd, [b])
        self.count += n
        return n


def stream_out(argv: list[str], host: str, command: str, consume: Callable[[IO[bytes]], T],
               stdin: bytes = b"") -> tuple[int, T, str] | None:
    """Run `command` on `host` through `ssh`, handing its stdout to `consume`: (status, value, stderr), or
    None when `ssh` itself failed before any byte (status 255): the caller then uses its own connection.
    An exception from `consume` is raised after `ssh` has ended."""
    proc = subprocess.Popen([*argv, "--", host, command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    try:
        fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # the default size only costs more reads
    err: list[bytes] = []
    helpers = [threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True),
               threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)]
    for helper in helpers:
        helper.start()
    reader = PipeReader(proc.stdout)
    value, failure = None, None
    try:
        value = consume(reader)
        while reader.take():
            pass  # what the consumer left unread (a tar's end padding): ssh must not die on a closed pipe
    except BaseException as exc:  # re-raised below unless ssh never got in
        failure = exc
        _end(proc, at_once=bool(reader.count) or not isinstance(exc, Exception))
    finally:
        status = proc.wait()
        proc.stdout.close()
        for helper in helpers:
            helper.join()
    interrupted = failure is not None and not isinstance(failure, Exception)
    if status == LOGIN_FAILED and reader.count == 0 and not interrupted:
        return None
    if failure is not None:
        raise failure
    return status, value, b"".join(err).decode("utf-8", "replace")


def _end(proc: subprocess.Popen, *, at_once: bool) -> None:
    """A consumer that gave up mid-stream (a refused archive member, an interrupt) wants nothing more:
    `ssh` is killed. One that failed on no bytes at all may have met an `ssh` that could not log in: it
    is ending by itself, and its status (255) is what says so."""
    if not at_once:
        try:
            proc.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()


def _feed(fh: IO[bytes], data: bytes) -> None:
    try:
        if data:
            fh.write(data)
    except BrokenPipeError:
        pass  # the command ended without reading it all: its status says why
    finally:
        fh.close()
