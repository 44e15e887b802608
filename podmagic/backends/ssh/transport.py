"""One persistent, self-healing SSH connection (paramiko, imported lazily).

`SSHTransport` owns a paramiko `Transport`: it connects, checks the host key
against podmagic's known-hosts file (first use recorded, a change refused),
authenticates with key files then the agent, keeps the link alive, and
re-connects with backoff when it drops. Everything above it (the SSH pod, the
RunPod backend's pods) speaks through `exec`, `stream_in`, `stream_out` and
`retrying`; an operation that may safely be repeated (reading a log from an
offset, polling an exit file) is wrapped in `retrying` so a dropped
connection costs a reconnect, never a lost or repeated byte.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterator, TypeVar

from podmagic.backends.base import BackendError, CommandResult, OnOutput
from podmagic.backends.ssh.hostkeys import (
    HostKeyChanged,
    HostKeySeen,
    check_server_key,
    known_hosts_path,
)
from podmagic.backends.ssh.hosts import SSHTarget
from podmagic.records import record

T = TypeVar("T")
WINDOW = 32 << 20
PACKET = 1 << 18
SFTP_CHUNK = 32768
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr")
BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


class ConnectionLost(BackendError):
    """The connection dropped while a non-repeatable command ran."""


class CommandTimeout(BackendError, TimeoutError):
    """A remote command outlived its timeout (the link itself is fine)."""


@record
class TransportOptions:
    connect_timeout_sec: float = 15.0
    keepalive_sec: int = 15
    io_timeout_sec: float = 60.0
    reconnect_timeout_sec: float = 300.0
    use_agent: bool = True


def is_connection_error(exc: BaseException) -> bool:
    """Errors that mean 'the link is gone' rather than 'the command failed'."""
    import paramiko

    if isinstance(exc, CommandTimeout):
        return False
    if isinstance(exc, (EOFError, socket.timeout, ConnectionError, paramiko.SSHException)):
        return not isinstance(exc, paramiko.AuthenticationException)
    return isinstance(exc, OSError) and exc.errno is None and "closed" in str(exc).lower()


class SSHTransport:
    """A persistent connection to one `SSHTarget`, reconnecting on demand."""

    def __init__(self, target: SSHTarget, *, known_hosts: str | Path | None = None,
                 options: TransportOptions = TransportOptions(),
                 on_host_trusted: Callable[[HostKeySeen], None] | None = None,
                 on_reconnect: Callable[[int, BaseException], None] | None = None,
                 on_retry: Callable[[int, BaseException], None] | None = None):
        self.target = target
        self.known_hosts = known_hosts_path(known_hosts)
        self.options = options
        self._on_trust = on_host_trusted
        self._on_reconnect = on_reconnect
        self._on_retry = on_retry
        self._down = False  # a link we had is gone and not yet re-made: its drop was announced
        self._lock = threading.RLock()
        self._transport = None
        self._sftp = None
        self._handles: dict[str, object] = {}
        self.connections = 0
        self.openssh_pulls = 0  # bulk pulls that went through the system's `ssh`
        self.openssh_refused = False  # it could not connect or log in (or there is none): paramiko only

    # -- connection ------------------------------------------------------
    def connect(self) -> "SSHTransport":
        with self._lock:
            if self._transport is None or not self._transport.is_active():
                if self._transport is not None:  # found dead between operations
                    self._announce(0, EOFError("the connection dropped while idle"))
                self._close_quietly()
                self._transport = self._open()
                self.connections += 1
                self._down = False
            return self

    def _announce(self, attempt: int, exc: BaseException) -> None:
        """One `on_reconnect` per lost link (however many tries re-making it takes); `on_retry` for each."""
        if self.connections and not self._down:
            self._down = True
            if self._on_reconnect:
                self._on_reconnect(self.connections, exc)
        elif self._on_retry:
            self._on_retry(attempt, exc)

    @property
    def reconnects(self) -> int:
        """How many times the link was re-established after the first connection."""
        return max(0, self.connections - 1)

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def drop(self) -> None:
        """Close the socket under the transport, as a network failure would."""
        with self._lock:
            if self._transport is not None:
                self._transport.sock.close()

    def _close_quietly(self) -> None:
        self._handles.clear()
        for thing in (self._sftp, self._transport):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # noqa: BLE001 - already broken, nothing to save
                pass
        self._sftp = self._transport = None

    def _open(self):
        import paramiko

        _quiet_paramiko()
        opts, target = self.options, self.target
        try:
            sock = socket.create_connection((target.host, target.port), timeout=opts.connect_timeout_sec)
        except OSError as exc:
            raise ConnectionError(f"cannot reach {target.spec}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock, default_window_size=WINDOW, default_max_packet_size=PACKET)
        transport.banner_timeout = opts.connect_timeout_sec
        _prefer_fast_ciphers(transport)
        try:
            transport.start_client(timeout=opts.connect_timeout_sec)
            key = transport.get_remote_server_key()
            check_server_key(self.known_hosts, target.known_hosts_name, key.get_name(),
                             key.asbytes(), self._on_trust)
            self._authenticate(transport)
        except BaseException:
            transport.close()
            raise
        transport.set_keepalive(opts.keepalive_sec)
        return transport

    def _authenticate(self, transport) -> None:
        import paramiko

        refused = 0
        for pkey in self._keys():
            if not transport.is_active():
                break
            try:
                transport.auth_publickey(self.target.user, pkey)
                return
            except paramiko.SSHException:
                # paramiko words a link that died mid-auth "Authentication failed." too: only a
                # refusal on a live link counts as the server's answer
                refused += transport.is_active()
                continue
        if not transport.is_active() and not refused:
            raise ConnectionError(f"the connection to {self.target.spec} dropped during authentication")
        raise BackendError(
            f"SSH authentication to {self.target.spec} failed (keys tried: "
            f"{', '.join(self.target.key_paths) or 'none'}{'; agent' if self.options.use_agent else ''}). "
            "Set ssh.key_path to a key the host accepts, or load it into ssh-agent."
        )

    def _keys(self) -> Iterator:
        import paramiko

        for path in (os.path.expanduser(p) for p in self.target.key_paths):
            if Path(path).is_file():
                try:
                    yield paramiko.PKey.from_path(path)
                except (paramiko.SSHException, ValueError, OSError):
                    continue
        if self.options.use_agent:
            try:
                yield from paramiko.Agent().get_keys()
            except paramiko.SSHException:
                return

    # -- retrying --------------------------------------------------------
    def retrying(self, operation: Callable[[], T], budget_sec: float | None = None) -> T:
        """Run a repeatable `operation`; on a dropped link reconnect with backoff
        for up to `budget_sec` (default `options.reconnect_timeout_sec`)."""
        budget = self.options.reconnect_timeout_sec if budget_sec is None else budget_sec
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            try:
                self.connect()
                return operation()
            except HostKeyChanged:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                if not is_connection_error(exc) or time.monotonic() >= deadline:
                    raise
                self._after_drop(attempt, exc)
                attempt += 1

    def _after_drop(self, attempt: int, exc: BaseException) -> None:
        with self._lock:
            self._close_quietly()
        self._announce(attempt, exc)
        time.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])

    # -- channels --------------------------------------------------------
    def sftp(self):
        """The connection's one SFTP session (re-opened after a reconnect)."""
        import paramiko

        with self._lock:
            self.connect()
            if self._sftp is None:
                self._sftp = paramiko.SFTPClient.from_transport(self._transport)
                self._sftp.get_channel().settimeout(self.options.io_timeout_sec)
            return self._sftp

    def read_at(self, path: str, offset: int, limit: int) -> bytes:
        """Bytes of a remote file from `offset` (b"" if it does not exist yet).

        The file stays open between calls, and its size is asked first, so
        a poll with nothing new costs one round trip and a large catch-up is
        read with pipelined requests (not one 32 KiB round trip after
        another). Not retried here: wrap it in `retrying`.
        """
        with self._lock:
            handle = self._handle(path)
            if handle is None:
                return b""
            try:
                return _read_range(handle, offset, limit)
            except Exception:
                self._handles.pop(path, None)
                raise

    def _handle(self, path: str):
        handle = self._handles.get(path)
        if handle is None:
            try:
                handle = self.sftp().open(path, "rb")
            except FileNotFoundError:
                return None
            self._handles[path] = handle
        return handle

    def forget(self, *paths: str) -> None:
        """Close cached handles (the files are about to be replaced)."""
        with self._lock:
            for path in paths:
                handle = self._handles.pop(path, None)
                if handle is not None:
                    try:
                        handle.close()
                    except Exception:  # noqa: BLE001 - a stale handle is just dropped
                        pass

    def channel(self, command: str, *, combine: bool = False):
        """A session running `command` (stderr merged into stdout when `combine`)."""
        with self._lock:
            self.connect()
            chan = self._transport.open_session(timeout=self.options.connect_timeout_sec)
        chan.settimeout(self.options.io_timeout_sec)
        chan.set_combine_stderr(combine)
        chan.exec_command(command)
        return chan

    def exec(self, command: str, *, timeout: float, on_output: OnOutput | None = None,
             stdin: bytes | None = None, retry_start: bool = False) -> CommandResult:
        """Run `command`, stdout and stderr merged; `timeout` bounds the whole call.

        With `retry_start`, failing to *open* the session (a link that died
        while idle) reconnects and tries again; once the command runs, a drop
        is the caller's to handle.
        """
        open_it = lambda: self.channel(command, combine=True)  # noqa: E731
        chan = self.retrying(open_it) if retry_start else open_it()
        try:
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            output = _drain(chan, time.monotonic() + timeout, on_output)
            return CommandResult(_status(chan), output)
        finally:
            chan.close()

    def exec_bytes(self, command: str, *, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
        """Run `command` and return (exit status, stdout bytes, stderr bytes)."""
        chan = self.channel(command)
        try:
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            out = _read_all(chan)
            err = chan.makefile_stderr("rb").read()
            return _status(chan), out, err
        finally:
            chan.close()

    def stream_in(self, command: str, produce: Callable[[IO[bytes]], None]) -> tuple[int, str]:
        """Run `command`, feeding its stdin from `produce(writer)`; returns (status, output)."""
        chan = self.channel(command, combine=True)
        try:
            try:
                writer = _ChannelWriter(chan)
                produce(writer)
                writer.flush()
                chan.shutdown_write()
            except (OSError, EOFError):
                if not (chan.exit_status_ready() and self._transport is not None and self._transport.is_active()):
                    raise  # the link died; otherwise the command ended early: report its own words
            out = _read_all(chan)
            return _status(chan), out.decode("utf-8", "replace")
        finally:
            chan.close()

    def stream_out(self, command: str, consume: Callable[[IO[bytes]], T], stdin: bytes = b"", *,
                   bulk: bool = False) -> tuple[int, T, str]:
        """Run `command`, handing its stdout to `consume(reader)`; returns (status, value, stderr). `bulk`
        (a pull of many bytes) goes through the system's `ssh` where it can (`openssh`)."""
        if bulk and (done := self._stream_out_openssh(command, consume, stdin)) is not None:
            return done
        chan = self.channel(command)
        try:
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            try:
                value = consume(ChannelReader(chan))
            except Exception as exc:
                if chan.transport is None or not chan.transport.is_active():
                    raise EOFError("connection lost during the transfer") from exc
                raise
            err = chan.makefile_stderr("rb").read().decode("utf-8", "replace")
            return _status(chan), value, err
        finally:
            chan.close()

    def _stream_out_openssh(self, command: str, consume: Callable[[IO[bytes]], T], stdin: bytes):
        """`stream_out` through `ssh`, once the transport's own connection has checked the host key; None
        when there is no usable `ssh` (it is then not tried again on this transport)."""
        from podmagic.backends.ssh import openssh

        if self.openssh_refused:
            return None
        self.connect()  # the host key is checked (and recorded on first use) by our own connection first
        opts = self.options
        argv = openssh.client_argv(self.target, self.known_hosts, use_agent=opts.use_agent,
                                   connect_timeout_sec=opts.connect_timeout_sec, keepalive_sec=opts.keepalive_sec)
        if argv is None:
            self.openssh_refused = True
            return None
        done = openssh.stream_out(argv, self.target.host, command, consume, stdin)
        if done is None:
            self.openssh_refused = True
            return None
        if done[0] == openssh.LOGIN_FAILED:  # after some bytes: the link, not the login, failed
            raise EOFError(f"connection lost during the transfer: {done[2].strip()[-300:]}")
        self.openssh_pulls += 1
        return done


def _quiet_paramiko() -> None:
    """A dropped link is reported as an `ssh_reconnect` event, not as a paramiko
    traceback on the cell's stderr (Python's last-resort handler would print it)."""
    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


def _prefer_fast_ciphers(transport) -> None:
    """AES-GCM first: with AES-NI it moves ~1.5x the bytes of AES-CTR + HMAC in paramiko."""
    security = transport.get_security_options()
    fast = tuple(c for c in FAST_CIPHERS if c in security.ciphers)
    security.ciphers = fast + tuple(c for c in security.ciphers if c not in fast)


class ChannelReader(io.RawIOBase):
    """A channel's stdout as a raw binary stream that takes all the channel holds at each look.

    paramiko's channel buffer hands out a read smaller than what it holds by moving the rest to its
    front (`del buffer[:n]`): with the 32 MiB window full behind a slow disk, reads of 1 MiB copied each
    byte up to 32 times (a 1 GiB pull took 30 s instead of 3). `take` gives the next chunk as received."""

    def __init__(self, chan):
        self.channel = chan
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def take(self):
        """The next chunk (bytes or a view of them); empty at the end of the stream."""
        if self._left:
            out, self._left = self._left, memoryview(b"")
            return out
        return self.channel.recv(WINDOW)

    def readinto(self, b) -> int:
        if not self._left:
            self._left = memoryview(self.channel.recv(WINDOW))
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def _read_all(chan) -> bytes:
    return b"".join(iter(lambda: chan.recv(WINDOW), b""))


class _ChannelRaw(io.RawIOBase):
    """A channel's stdin as a raw binary stream."""

    def __init__(self, chan):
        self._chan = chan

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._chan.sendall(bytes(data))
        return len(data)


class _ChannelWriter(io.BufferedWriter):
    """Buffered writes onto a channel (few, large packets); `tell()` counts bytes written."""

    def __init__(self, chan, buffer_size: int = 1 << 20):
        super().__init__(_ChannelRaw(chan), buffer_size)
        self._written = 0

    def write(self, data) -> int:
        self._written += len(data)
        return super().write(data)

    def tell(self) -> int:
        return self._written

    def seekable(self) -> bool:
        return False


def _read_range(handle, offset: int, limit: int) -> bytes:
    available = min(handle.stat().st_size - offset, limit)
    if available <= 0:
        return b""
    if available <= SFTP_CHUNK:
        handle.seek(offset)
        return handle.read(available)
    return b"".join(handle.readv([(offset, available)]))


def _status(chan) -> int:
    """The exit status; a channel closed by a dead link raises instead of -1."""
    code = chan.recv_exit_status()
    if code == -1 and (chan.transport is None or not chan.transport.is_active()):
        raise EOFError("connection lost before the command reported its exit status")
    return code


def _drain(chan, deadline: float, on_output: OnOutput | None) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    parts: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CommandTimeout("remote command exceeded its timeout")
        chan.settimeout(min(remaining, 5.0))
        try:
            data = chan.recv(1 << 16)
        except socket.timeout:
            if chan.transport is None or not chan.transport.is_active():
                raise EOFError("connection lost")
            continue
        if not data:
            break
        text = decoder.decode(data)
        if text:
            parts.append(text)
            if on_output:
                on_output(text)
    tail = decoder.decode(b"", final=True)
    if tail:
        parts.append(tail)
        if on_output:
            on_output(tail)
    return "".join(parts)
