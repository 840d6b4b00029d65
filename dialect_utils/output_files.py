"""Writing output files so that a failure never damages an existing one.

Every tool and report writer goes through `write_atomically`: the data goes to a
temporary file in the destination's folder, which replaces the destination only once it
is complete (`os.replace` is atomic on one file system), so an interrupted or failed
write leaves the old file as it was. `output_problem` checks a destination before any
long work starts, so that a typo in a folder name is reported at once, not after the run.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def output_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be written (its folder is missing, not a folder or not writable,
    or it is a folder itself), or None."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        return "it is a directory"
    if not folder.exists():
        return f"no such directory: '{folder}'"
    if not folder.is_dir():
        return f"not a directory: '{folder}'"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"permission denied: cannot create files in '{folder}'"
    if target.exists() and not os.access(target, os.W_OK):
        return "permission denied"
    return None


def write_atomically(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, renamed over
    `path` when complete. Raises OSError (`strerror`: what is wrong; `path` untouched)
    on failure."""
    target = Path(path)
    problem = output_problem(target)
    if problem is not None:
        raise OSError(errno.EINVAL, problem, str(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
