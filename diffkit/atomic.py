"""Write-then-rename, durably, so a killed process or a lost power never leaves a half-written output.

The file is written under a temporary name beside its target, flushed to disk (fsync), renamed over the
target in one step, and the folder is fsynced so the rename itself survives a crash.
"""

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from diffkit.errors import DiffkitError

FULL = (errno.ENOSPC, errno.EDQUOT)


def fsync_path(path):
    """Flush a file's or a folder's contents (a folder: its entries, i.e. renames) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(n):
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


@contextlib.contextmanager
def reported_writes(path, needed=None):
    """Turn a failed write (a full disk, a quota, a read-only or failing device) into one line naming the path,
    the space free there and, when known, the bytes the write needed. Nothing written before is touched."""
    try:
        yield
    except DiffkitError:
        raise
    except Exception as exc:  # OSError, or safetensors' own error type wrapping one
        full = getattr(exc, "errno", None) in FULL or "No space left" in str(exc) or "quota" in str(exc).lower()
        if not full and not isinstance(exc, OSError):
            raise
        if full:
            folder = Path(path).parent
            while not folder.exists():
                folder = folder.parent
            need = f", about {_size(needed)} needed" if needed else ""
            raise DiffkitError(f"no space left to write {path} ({_size(shutil.disk_usage(folder).free)} free on its "
                               f"device{need}); free some space and run again: what was written before is kept") from None
        raise DiffkitError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def atomic_path(path, needed=None):
    """Yield a temporary path next to `path`; on success it is fsynced and replaces `path` in one rename. A write
    that fails (a full disk, say) is one line, and `path` keeps what it held."""
    path = Path(path)
    with reported_writes(path, needed):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
        try:
            yield Path(tmp)
            fsync_path(tmp)
            os.replace(tmp, path)
            fsync_path(path.parent)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def refuse_link(path, what):
    """One line if `path`, a folder diffkit writes into, is a symbolic link: diffkit never writes through a link
    it did not make (it could land anywhere)."""
    if Path(path).is_symlink():
        raise DiffkitError(f"{path} is a symbolic link; diffkit writes {what} only into a real folder there: "
                           f"remove the link (or replace it with a folder) and run again")


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_writable(path, option, folder=False):
    """A one-line error now, before any work, if `path` (a file, or with folder=True a directory) cannot
    be written: an existing folder where a file goes (or the reverse), a file in the way of its parent
    folders, or no write permission."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise DiffkitError(f"{option} {path} is a {'file' if folder else 'folder'}; give a {'folder' if folder else 'file'} path")
    parent = path if folder and path.exists() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise DiffkitError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise DiffkitError(f"{option} {path}: no permission to write in {parent}")
