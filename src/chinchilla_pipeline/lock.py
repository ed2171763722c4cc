"""One writer per output: an exclusive ``flock`` on ``.<name>.lock`` beside the output directory.

The kernel releases an ``flock`` when its holder exits, however it exits (``kill -9``
too), so a lock left by a killed run never blocks its resume. The lock file holds
the holder's PID for the message a second writer prints, and is removed on
release. It lives beside the output, not in it, because outputs are replaced
whole (``--overwrite``, the tokenizer's and the export's directory renames).
Under torchrun ``pretrain`` writes on rank 0 only, and only rank 0 takes its lock; ``prepare`` locks each
rank's own part.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .errors import UserError


def lock_path(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def output_lock(out: str | Path, command: str) -> Iterator[Path]:
    """Hold the lock of output ``out`` (a directory, created or not) while the block runs.

    A second holder gets a ``UserError`` at once naming the PID that holds it.
    """
    path = lock_path(out)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:  # a file where the output's parent directory belongs
        raise NotADirectoryError(errno.ENOTDIR, err.strerror, str(path.parent)) from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:  # read-only or forbidden: name the output, not its lock file
            raise type(err)(err.errno, err.strerror, str(out)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"is being written by another `chinchilla {command}` (PID {holder}); wait for it to "
                "finish or stop it (one writer per output)",
                path=out,
            ) from None
        try:  # the file we locked may have been released and unlinked meanwhile: then lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # closing releases the lock
        for d in created:  # directories made only for the lock, left empty by a failed run
            try:
                d.rmdir()
            except OSError:
                break


def rank_zero() -> bool:
    """This process writes outputs: not a torchrun/Slurm rank other than 0."""
    return int(os.environ.get("RANK", "0")) == 0
