"""Write-then-rename, durably, so a killed process or a lost power never leaves a half-written output.

The file is written under a temporary name beside its target, flushed to disk (fsync), renamed over the
target in one step, and the folder is fsynced so the rename itself survives a crash.
"""

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_path(path):
    """Flush a file's or a folder's contents (a folder: its entries, i.e. renames) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success it is fsynced and replaces `path` in one rename."""
    path = Path(path)
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


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_writable(path, option, folder=False):
    """A one-line error now, before any work, if `path` (a file, or with folder=True a directory) cannot
    be written: an existing folder where a file goes (or the reverse), a file in the way of its parent
    folders, or no write permission."""
    from diffkit.errors import DiffkitError

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
