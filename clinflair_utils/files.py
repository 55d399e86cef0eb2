"""Writing files so that a reader finds either the old file or the complete new one, never a part."""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ClinflairError


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved onto ``path`` when the block ends without
    an error, removed when it raises (an interrupted write leaves the old file, or none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temporaries(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield temporary
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_orphaned_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of :func:`atomic_path` beside ``path`` whose writer no longer runs: a
    process killed outright (SIGKILL, a lost machine) cannot remove its own, and an embedding cache's
    is gigabytes. Returns the removed paths; a writer still running keeps its temporary."""
    removed = []
    for temporary in path.parent.glob(f".{glob.escape(path.name)}.tmp*"):
        pid = temporary.name[len(f".{path.name}.tmp"):]
        if pid.isdigit() and not _is_running(int(pid)):
            temporary.unlink(missing_ok=True)
            removed.append(temporary)
    return removed


def _size(count: int) -> str:
    return f"{count / 1e9:.2f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"


def reserve_space(path: Path | str, size: int, fix: str, name: str | None = None) -> None:
    """Allocate ``size`` bytes for the existing file ``path`` now, so that a full disk stops the
    write here with a message naming the file (``name``, else ``path``) and ``fix``: a memory-mapped
    file filled later would otherwise meet the full disk as a SIGBUS, which kills the process
    without a word."""
    path, name = Path(path), name or str(path)
    free = shutil.disk_usage(path.parent).free
    if size > free + path.stat().st_blocks * 512:  # what the file holds already is not needed again
        raise ClinflairError(f"{name} needs {_size(size)} and its disk has {_size(free)} free: {fix}")
    if hasattr(os, "posix_fallocate"):  # not on macOS, where the check above is what there is
        try:
            with open(path, "r+b") as file:
                os.posix_fallocate(file.fileno(), 0, size)
        except OSError as error:  # another writer took the space meanwhile, a quota, a file size limit
            if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise ClinflairError(f"{name} cannot be given its {_size(size)} ({error.strerror}): {fix}") \
                    from error
            raise


def write_json(path: Path | str, payload: dict) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, ensure_ascii=False))


def copy_file(source: Path | str, target: Path | str) -> None:
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def file_sha256(path: Path | str) -> str:
    """The file's SHA-256, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def training_lock(lock_file: Path | str) -> Iterator[None]:
    """Train into ``lock_file``'s folder alone: while another process holds the lock (it trains
    there, started twice or resumed while the first still runs), say which and wait for it to end,
    so that two trainers never write the same checkpoints. The operating system releases the lock
    when its holder ends, killed or not. The file holds the holder's pid."""
    lock_file = Path(lock_file)
    folder = lock_file.parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            print(f"{folder}: process {holder} is training here; waiting for it to end", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
