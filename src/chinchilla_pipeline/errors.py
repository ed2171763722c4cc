"""User-facing errors: one line naming the file, the field and what was expected; exit code 2."""

from __future__ import annotations

import errno
from pathlib import Path

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input (config, files, flags), never a bug.

    The CLI prints ``str(error)`` on one line and exits with code 2.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None):
        self.path = str(path) if path is not None else None
        self.field = field
        parts = []
        if self.path:
            parts.append(self.path)
        if field:
            parts.append(f"field '{field}'")
        parts.append(message)
        super().__init__(": ".join(parts))


# What the user can do about an operating-system failure, by errno.
_ENVIRONMENT = {
    errno.ENOSPC: "no space left on the device: free space (or choose another output directory) and run again; "
    "it resumes",
    errno.EDQUOT: "disk quota exceeded: free space (or choose another output directory) and run again; it resumes",
    errno.EROFS: "read-only file system: choose a writable output directory",
    errno.EACCES: "permission denied: make it writable (or readable) for this user, or choose another path",
    errno.EPERM: "operation not permitted: make it writable for this user, or choose another path",
    errno.ENOTDIR: "a part of this path is a regular file, not a directory: choose another path",
    errno.EEXIST: "exists and is not a directory: choose another path, or move the file away",
    errno.EISDIR: "is a directory where a file was expected: choose another path",
}


def environment_error(err: OSError) -> UserError | None:
    """A ``UserError`` naming the path and what to do for an environment failure (disk full,
    read-only or forbidden output, a file where a directory belongs); None for other errors (bugs)."""
    advice = _ENVIRONMENT.get(err.errno)
    if advice is None:
        return None
    return UserError(f"{advice} ({errno.errorcode.get(err.errno, err.errno)})", path=err.filename)
