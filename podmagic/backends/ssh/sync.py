"""Push and pull directory trees over SSH with one tar stream each way.

Both directions work like `rsync -a` without its per-file round trips:
1. one command lists the far side (`find -printf`: type, size, mtime, path);
2. the near side compares size and whole-second mtime, so an unchanged tree
   costs that single listing and no data;
3. the changed files travel as one tar archive over one channel
   (`tar -x` on the pod for a push, `tar -c` on the pod for a pull);
4. with `delete`, far-side files that were not sent and are not excluded
   are removed (rsync's `--delete`: excluded files are protected).
Symlinks travel as symlinks both ways (rsync `-a`): never followed, and a pulled
one is made with its target verbatim, never written through.
Paths given here are already mapped (real paths on the host).
"""

from __future__ import annotations

import fcntl
import functools
import os
import posixpath
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import IO, Iterable, NamedTuple

from podmagic.backends.base import BackendError, Transfer
from podmagic.backends.ssh.transport import SSHTransport
from podmagic.plan import staging
from podmagic.records import record

q = shlex.quote
BUFFER = 1 << 20
BULK_BYTES = 64 << 20
"""A pull of at least this many bytes goes through the system's `ssh` where it can (`transport.stream_out`):
its own handshake costs about 0.1 s; paramiko moves about half the bytes a second."""


class Entry(NamedTuple):  # not @record: made and compared by the ten thousand; a tuple compares in C
    """One file-system entry: type (`f`, `d`, `l`), size, whole-second mtime."""

    kind: str
    size: int
    mtime: int


@record
class Listing:
    """The far side of a transfer: a directory's entries, one file, or nothing."""

    kind: str  # "dir" | "file" | "missing"
    entries: dict[str, Entry]


def prunable(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Exclude patterns that name a directory at any depth (`.venv/`, `**/__pycache__/`).

    `find -name X -prune` means exactly what rsync means by them, so the far
    side never lists what is inside (a pod's `.venv` can hold tens of
    thousands of files). Other patterns are applied after listing.
    """
    names = []
    for pattern in patterns:
        body = pattern[3:] if pattern.startswith("**/") else pattern
        if pattern.endswith("/") and "/" not in body[:-1] and "**" not in body and body[:-1]:
            names.append(body[:-1])
    return tuple(names)


def listing_command(path: str, prune: tuple[str, ...] = ()) -> str:
    p = q(path)
    fmt = "'%y %s %T@ %P\\0'"
    pruned = " -o ".join(f"-name {q(name)}" for name in prune)
    skip = f"\\( -type d \\( {pruned} \\) -printf {fmt} -prune \\) -o " if prune else ""
    return (
        f"if [ -d {p} ]; then printf 'D\\0'; cd {p} && find . -mindepth 1 {skip}-printf {fmt}; "
        f"elif [ -e {p} ] || [ -L {p} ]; then printf 'F\\0'; "
        f"find {p} -maxdepth 0 -printf '%y %s %T@ %f\\0'; "
        "else printf 'M\\0'; fi"
    )


def parse_listing(raw: bytes) -> Listing:
    records = raw.split(b"\0")
    head = records[0].decode()
    kind = {"D": "dir", "F": "file", "M": "missing"}.get(head)
    if kind is None:
        raise BackendError(f"unexpected listing from the pod: {raw[:200]!r}")
    entries = {}
    for line in records[1:]:
        if not line:
            continue
        text = line.decode("utf-8", "surrogateescape")
        kind_char, size, mtime, rel = text.split(" ", 3)
        entries[rel] = Entry(kind_char, int(size), int(mtime.partition(".")[0]))  # whole seconds, as int(float)
    return Listing(kind, entries)


def remote_listing(transport: SSHTransport, path: str, excludes: tuple[str, ...] = ()) -> Listing:
    def once() -> Listing:
        status, out, err = transport.exec_bytes(listing_command(path, prunable(excludes)))
        if status != 0:
            raise BackendError(f"listing {path} on the pod failed: {err.decode(errors='replace')[-500:]}")
        return parse_listing(out)

    return transport.retrying(once)


def local_entry(path: Path | str) -> Entry | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    kind = "l" if stat.S_ISLNK(st.st_mode) else ("d" if stat.S_ISDIR(st.st_mode) else "f")  # one lstat
    return Entry(kind, st.st_size, int(st.st_mtime))


def same(a: Entry | None, b: Entry | None) -> bool:
    return a is not None and b is not None and a == b


def _doomed(existing: dict[str, Entry], kept: set[str], patterns: tuple[str, ...]) -> list[str]:
    """Top-most far-side paths `--delete` removes: files neither sent nor excluded, and
    directories not in the source that hold nothing that survives (excluded content
    survives, so its directories do too)."""
    protected = ({r for r, e in existing.items() if staging.excluded_path(r, e.kind == "d", patterns)}
                 if patterns else set())
    doomed = {r for r, e in existing.items() if e.kind != "d" and r not in kept and r not in protected}
    anchors = kept | protected | {r for r, e in existing.items() if e.kind != "d" and r not in doomed}
    live = set().union(*(_ancestors(r) for r in anchors)) if anchors else set()
    doomed |= {r for r, e in existing.items() if e.kind == "d" and r not in live and r not in protected}
    return sorted(r for r in doomed if not (_ancestors(r) & doomed))


def _ancestors(rel: str) -> set[str]:
    parts = rel.split("/")
    return {"/".join(parts[:i]) for i in range(1, len(parts))}


# -- push ---------------------------------------------------------------------
def push_tree(transport: SSHTransport, base: Path, files: Iterable[str], destination: str, *,
              excludes: tuple[str, ...], delete: bool) -> Transfer:
    """Mirror `files` (relative to `base`) into the pod directory `destination`."""
    selected = list(files)
    with ThreadPoolExecutor(1) as pool:  # the far side lists while the near side is looked at
        listing = pool.submit(remote_listing, transport, destination, excludes)
        prefix = os.path.join(os.fspath(base), "")
        near = [local_entry(prefix + rel) for rel in selected]  # str paths: pathlib costs more than the lstat
        far = listing.result()
    if far.kind == "file":
        raise BackendError(f"staging destination {destination} is a file on the pod, not a directory")
    changed, size = [], 0
    for rel, entry in zip(selected, near):
        if not same(entry, far.entries.get(rel)):
            changed.append(rel)
            size += entry.size if entry is not None and entry.kind == "f" else 0
    clash = [rel for rel in changed if far.entries.get(rel, Entry("f", 0, 0)).kind == "d"]
    doomed = _doomed(far.entries, set(selected), excludes) if delete else []
    _remove(transport, destination, sorted(set(doomed) | set(clash)))
    dirs = _new_dirs(prefix, changed, far)
    sent = _send_tar(transport, base, dirs + changed, destination, size=size) if changed else 0
    return Transfer(sent, len(selected))


def _new_dirs(prefix: str, changed: list[str], far: Listing) -> list[str]:
    """The directories the changed files need that the pod lacks, parents first: the archive creates them
    before any file, as rsync does (a directory made between two files' creations lands where ext4 then
    scans past every recently deleted inode; on this VM that made a first push 3x slower). Only real
    local directories: a symlink among a file's parents is never sent as one."""
    there = {rel for rel, entry in far.entries.items() if entry.kind == "d"}
    wanted = sorted({a for rel in changed for a in _ancestors(rel)} - there)
    return [rel for rel in wanted if (entry := local_entry(prefix + rel)) is not None and entry.kind == "d"]


def push_file(transport: SSHTransport, source: Path, remote: str) -> Transfer:
    """One local file to the pod path `remote` (skipped when unchanged)."""
    far = remote_listing(transport, remote)
    name = PurePosixPath(remote).name
    if far.kind == "file" and same(local_entry(source), far.entries.get(name)):
        return Transfer(0, 1)
    parent = posixpath.dirname(remote) or "/"
    sent = _send_tar(transport, source.parent, [source.name], parent, rename={source.name: name})
    return Transfer(sent, 1)


def _remove(transport: SSHTransport, root: str, rels: list[str]) -> None:
    if not rels:
        return
    payload = b"".join(r.encode("utf-8", "surrogateescape") + b"\0" for r in rels)
    result = transport.exec(f"cd {q(root)} && xargs -0 -r rm -rf --", timeout=600, stdin=payload)
    if result.exit_code != 0:
        raise BackendError(f"deleting stale files under {root} failed: {result.output[-500:]}")


def _send_tar(transport: SSHTransport, base: Path, rels: list[str], destination: str,
              rename: dict[str, str] | None = None, size: int | None = None) -> int:
    """Send `rels` as one archive; returns the file bytes sent. The system tar is used when the byte
    count is known from a listing (`size`) and nothing is renamed; else `tarfile`, which counts them."""
    command = f"mkdir -p {q(destination)} && tar -x -p --no-same-owner -f - -C {q(destination)}"
    if not rename and size is not None and _gnu_tar():
        return _send_tar_with_system_tar(transport, base, rels, command, destination, size)
    counted = {"bytes": 0}

    def produce(writer: IO[bytes]) -> None:
        with tarfile.TarFile(fileobj=writer, mode="w", format=tarfile.GNU_FORMAT, copybufsize=BUFFER) as tar:
            for rel in rels:
                counted["bytes"] += _add(tar, base / rel, (rename or {}).get(rel, rel))

    status, output = transport.stream_in(command, produce)
    if status != 0:
        raise BackendError(f"unpacking on the pod into {destination} failed: {output[-500:]}")
    return counted["bytes"]


def _send_tar_with_system_tar(transport: SSHTransport, base: Path, rels: list[str], command: str,
                              destination: str, size: int) -> int:
    """The archive made by this machine's GNU tar (C, no Python work per file), piped onto the channel.

    The same archive as `_add` makes: GNU format, whole-second mtimes, owner 0, no names."""
    names = b"".join(r.encode("utf-8", "surrogateescape") + b"\0" for r in rels)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            ["tar", "-c", "-f", "-", "--format=gnu", "--numeric-owner", "--owner=0", "--group=0",
             "-C", str(base), "--no-recursion", "--null", "-T", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        try:  # a 1 MiB pipe: fewer, larger reads (Linux; the default is 64 KiB)
            fcntl.fcntl(proc.stdout.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), BUFFER)
        except OSError:
            pass
        feeder = threading.Thread(target=_feed, args=(proc, names), daemon=True)
        feeder.start()

        def produce(writer: IO[bytes]) -> None:
            while chunk := proc.stdout.read1(BUFFER):
                writer.write(chunk)

        try:
            status, output = transport.stream_in(command, produce)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            feeder.join()
        if status != 0:  # the pod's words first: tar here only failed because the pod stopped reading
            raise BackendError(f"unpacking on the pod into {destination} failed: {output[-500:]}")
        if proc.returncode != 0:
            err.seek(0)
            raise BackendError(f"archiving the staged files failed: {err.read().decode(errors='replace')[-500:]}")
    return size


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except (BrokenPipeError, ValueError):
        pass


@functools.lru_cache(maxsize=1)
def _gnu_tar() -> bool:
    """Whether this machine's `tar` is GNU tar (PODMAGIC_PYTHON_TAR=1 forces Python's tarfile)."""
    if os.environ.get("PODMAGIC_PYTHON_TAR") or not shutil.which("tar"):
        return False
    try:
        out = subprocess.run(["tar", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "GNU tar" in out


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> int:
    info = tar.gettarinfo(str(path), arcname=arcname)
    info.mtime = int(info.mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isreg():
        with path.open("rb") as fh:
            tar.addfile(info, fh)
        return info.size
    tar.addfile(info)
    return 0


# -- pull ---------------------------------------------------------------------
def pull_tree(transport: SSHTransport, remote: str, local: Path, *,
              excludes: tuple[str, ...], delete: bool, contents: bool = True) -> Transfer:
    """Mirror the pod path `remote` into `local`: a directory's contents when
    `contents` (rsync's trailing `/`), else the directory itself into `local/<name>`;
    one file into `local` (or `local/<name>` when `local` is a directory)."""
    far = remote_listing(transport, remote, excludes)
    if far.kind == "missing":
        raise FileNotFoundError(f"{remote} does not exist on the pod")
    if far.kind == "file":
        return _pull_file(transport, remote, far, local)
    if not contents:
        local = local / PurePosixPath(remote.rstrip("/")).name
    wanted = {r: e for r, e in far.entries.items() if e.kind != "d" and not staging.excluded_path(r, False, excludes)}
    local.mkdir(parents=True, exist_ok=True)
    changed = sorted(r for r, e in wanted.items() if not same(local_entry(local / r), e))
    size = sum(wanted[r].size for r in changed)
    received = _receive_tar(transport, remote, changed, local, size=size) if changed else 0
    if delete:
        _delete_local(local, set(wanted), excludes)
    return Transfer(received, len(wanted))


def _pull_file(transport: SSHTransport, remote: str, far: Listing, local: Path) -> Transfer:
    name = PurePosixPath(remote).name
    target = local / name if local.is_dir() else local
    entry = far.entries.get(name)
    if same(local_entry(target), entry):
        return Transfer(0, 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry is not None and entry.kind == "f":
        return Transfer(_receive_file(transport, remote, target, entry), 1)
    received = _receive_tar(transport, posixpath.dirname(remote) or "/", [name], target.parent,
                            rename={name: target.name}, size=entry.size if entry else 0)
    return Transfer(received, 1)


def _receive_file(transport: SSHTransport, remote: str, target: Path, entry: Entry) -> int:
    """One regular file, as its bytes (no archive to parse): `cat` on the pod, large writes here, then
    the pod's mode and whole-second mtime, and a rename into place."""
    command = f"stat -c %a -- {q(remote)} >&2 && exec cat -- {q(remote)}"
    tmp = target.with_name(f".{target.name}.podmagic-part")

    def consume(reader: IO[bytes]) -> int:
        take = getattr(reader, "take", None) or (lambda: reader.read(BUFFER))  # the chunks as received
        total = 0
        with open(tmp, "wb", buffering=0) as out:
            while chunk := take():
                out.write(chunk)
                total += len(chunk)
        return total

    try:
        status, total, err = transport.stream_out(command, consume, bulk=entry.size >= BULK_BYTES)
        if status != 0:
            raise BackendError(f"reading {remote} on the pod failed: {err[-500:]}")
        mode = int((err.strip().splitlines() or ["644"])[-1], 8)
        os.chmod(tmp, mode & 0o777)
        os.utime(tmp, (entry.mtime, entry.mtime))
        os.replace(tmp, target)  # a symlink there is replaced, never followed
    finally:
        tmp.unlink(missing_ok=True)
    return total


def _receive_tar(transport: SSHTransport, remote_dir: str, rels: list[str], local: Path,
                 rename: dict[str, str] | None = None, size: int = 0) -> int:
    command = f"cd {q(remote_dir)} && tar -c -f - --null --no-recursion -T -"
    names = b"".join(r.encode("utf-8", "surrogateescape") + b"\0" for r in rels)

    def consume(reader: IO[bytes]) -> int:
        total = 0
        with tarfile.open(fileobj=reader, mode="r|", bufsize=BUFFER, copybufsize=BUFFER) as tar:
            for member in tar:
                member.name = (rename or {}).get(member.name, member.name)
                _check_member(member)
                _extract(tar, member, local)
                total += member.size if member.isreg() else 0
        return total

    status, total, err = transport.stream_out(command, consume, stdin=names, bulk=size >= BULK_BYTES)
    if status != 0:
        raise BackendError(f"packing {remote_dir} on the pod failed: {err[-500:]}")
    return total


def _check_member(member: tarfile.TarInfo) -> None:
    parts = PurePosixPath(member.name).parts
    if member.name.startswith("/") or ".." in parts or not (member.isreg() or member.issym() or member.isdir()):
        raise BackendError(f"refusing unsafe archive member from the pod: {member.name!r}")


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, local: Path) -> None:
    target = local / member.name
    if member.issym():
        _symlink(member, local, target)
        return
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()
    if not hasattr(tarfile, "data_filter"):  # pragma: no cover - Python < 3.10.12
        tar.extract(member, local)
        return
    try:
        tar.extract(member, local, filter="data")
    except tarfile.FilterError as exc:
        raise BackendError(f"refusing archive member from the pod: {exc}") from exc


def _symlink(member: tarfile.TarInfo, local: Path, target: Path) -> None:
    """A symlink from the pod stays a symlink, its target verbatim (rsync -a); it is never followed,
    and nothing is written through a local link that leads out of `local`."""
    parent = os.path.realpath(target.parent)
    base = os.path.realpath(local)
    if parent != base and not parent.startswith(base + os.sep):
        raise BackendError(f"refusing archive member from the pod: {member.name!r} would land outside {local}")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()
    elif target.is_dir():
        import shutil

        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(member.linkname, target)
    os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def _delete_local(local: Path, kept: set[str], excludes: tuple[str, ...]) -> None:
    for dirpath, dirnames, filenames in os.walk(local, topdown=False):
        rel_dir = os.path.relpath(dirpath, local).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]  # an entry, not a folder
        dirnames[:] = [d for d in dirnames if d not in links]
        for name in filenames + links:
            rel = prefix + name
            if rel not in kept and not staging.excluded_path(rel, False, excludes):
                os.unlink(os.path.join(dirpath, name))
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.listdir(path) and not staging.excluded_path(prefix + name, True, excludes):
                os.rmdir(path)
