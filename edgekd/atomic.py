"""The one way edgekd writes an output file: all of it or nothing, and never a temp file left behind.

`atomic_path(path)` hands out a temp path in the same folder (a rename across file systems is a
copy, not atomic); when the block ends without error the temp file is fsynced and `os.replace`d
onto `path`, so a reader (or a resumed run) sees the old file or the new one, never half of one.
On ANY failure — ENOSPC, a read-only folder, a writer's own exception, Ctrl-C — the temp file is
removed before the error goes on. OSErrors become one-line `WriteError`s naming the file (the
CLI prints those without a traceback).

`fault_point(name)` is a test hook: with `EDGEKD_FAULT_PAUSE=name:seconds` in the environment the
process announces the point on stderr and sleeps there, so a fault test can SIGKILL it at a
moment that would otherwise be too short to hit (e.g. between two checkpoint files).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from edgekd.errors import EdgekdError


class WriteError(EdgekdError):
    """An output file could not be written (disk full, read-only folder, no permission)."""


_HINTS = {errno.ENOSPC: "the disk is full; free space or choose another --out",
          errno.EDQUOT: "the disk quota is exceeded; free space or choose another --out",
          errno.EROFS: "the file system is read-only; choose another --out",
          errno.EACCES: "no permission to write there; choose another --out",
          errno.EPERM: "no permission to write there; choose another --out"}


def write_error(path: str | Path, e: OSError) -> WriteError:
    """One line for a failed write: the file, the OS's words, what to do."""
    hint = _HINTS.get(e.errno, "check the folder exists and is writable")
    return WriteError(f"{path}: cannot write ({e.strerror or e}); {hint}")


def _fsync_dir(folder: Path) -> None:
    # makes the rename itself durable; some file systems refuse to open a folder: best effort
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def folder_error(folder: str | Path) -> OSError:
    """The OSError a write into `folder` most likely met, for libraries (libsndfile) that report
    only "System error": a read-only mount, no free blocks, no permission."""
    try:
        st = os.statvfs(folder)
        if st.f_flag & os.ST_RDONLY:
            code = errno.EROFS
        elif st.f_bavail == 0:
            code = errno.ENOSPC
        elif not os.access(folder, os.W_OK):
            code = errno.EACCES
        else:
            code = errno.EIO
    except OSError as e:
        return e
    return OSError(code, os.strerror(code))


def ensure_dir(folder: str | Path) -> Path:
    """mkdir -p, with a read-only or full disk as one WriteError line instead of a traceback."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(folder, e) from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path` to write to; commit it onto `path` on success.

    The temp name keeps the final suffix because some writers (np.save, np.savez) append one.
    """
    path = Path(path)
    ensure_dir(path.parent)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # data on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, EdgekdError):
            raise write_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def sweep_stale(folder: str | Path) -> list[Path]:
    """Remove temp files that a killed process left in `folder` (SIGKILL runs no cleanup).

    Only names of the form `<name>.tmp-<pid><suffix>` whose pid is no longer running are removed,
    so a live writer's temp file is never touched. Returns what was removed."""
    import re

    gone = []
    for p in Path(folder).glob("*.tmp-*"):
        m = re.search(r"\.tmp-(\d+)", p.name)
        if not m or not p.is_file():
            continue
        pid = int(m.group(1))
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()  # our own pid here is a reused one: we have not written yet
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            with contextlib.suppress(OSError):
                p.unlink()
                gone.append(p)
    return gone


def atomic_write(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write `data` (text is encoded) to `path` atomically; returns `path`."""
    raw = data.encode(encoding) if isinstance(data, str) else data
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(raw)
    return Path(path)


def fault_point(name: str) -> None:
    """Test hook (see module doc); costs one environment lookup when unused."""
    spec = os.environ.get("EDGEKD_FAULT_PAUSE", "")
    if not spec:
        return
    want, _, secs = spec.partition(":")
    if want == name:
        print(f"edgekd-fault-point {name}", file=sys.stderr, flush=True)
        time.sleep(float(secs or 1.0))
