"""An exclusive lock on a run directory while a process writes to it.

Two trainings into one folder would silently replace each other's checkpoints and interleave their logs;
the second now stops at once with one line naming the first one's PID. The lock is an flock on
RUN_DIR/.lock, which the kernel releases when its holder dies, even by kill -9.
"""

import contextlib
import fcntl
import os
import shutil
from pathlib import Path

from diffkit import distributed
from diffkit.errors import DiffkitError


@contextlib.contextmanager
def run_lock(run_dir, what="run directory", remove_if_refused=True):
    """Hold the lock of RUN_DIR (or of another output folder, `what`) for the block (rank 0 only: other ranks
    never write). With remove_if_refused, a folder created here is removed again if the block fails before it
    holds a checkpoint, so a refused run leaves nothing behind. The lock file is never followed through a link: a
    `.lock` that points at another file is refused, and that file is left untouched."""
    if not distributed.is_main():
        yield
        return
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise DiffkitError(f"--out {run_dir} is a file, not a {what}; choose another --out")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if (run_dir / ".lock").is_symlink():
            raise DiffkitError(f"{run_dir}/.lock is a symbolic link, which diffkit never writes through; remove "
                               f"it") from None
        raise DiffkitError(f"cannot write the {what} {run_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DiffkitError(f"{run_dir} is in use by another diffkit process (PID {holder}); wait for it to "
                           f"finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    ok = False
    try:
        yield
        ok = True
    finally:
        if not ok and created and remove_if_refused and not any((run_dir / "checkpoints").glob("*step-*")):
            shutil.rmtree(run_dir, ignore_errors=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
