"""Optional plugin: training and evaluation figures as TensorBoard scalars in RUN_DIR/tensorboard.

Active when TensorBoard is installed (`pip install "diffkit[tensorboard]"`), silent otherwise; then
`tensorboard --logdir RUN_DIR` shows the loss, images/s and, after `diffkit compare`, every pair's scores.
"""

import functools

import click

from diffkit import hookimpl


@functools.lru_cache(maxsize=None)
def writer(run_dir):
    """One SummaryWriter per run directory, or None without TensorBoard, or when RUN_DIR/tensorboard is a
    symbolic link (diffkit never writes through a link it did not make; a warning says so, once)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    folder = run_dir / "tensorboard"
    if folder.is_symlink():
        click.echo(f"Warning: {folder} is a symbolic link; TensorBoard logging is off for this run (remove the "
                   f"link to turn it on)", err=True)
        return None
    return SummaryWriter(log_dir=str(folder))


@hookimpl
def log_metrics(run_dir, step, metrics):
    out = writer(run_dir)
    if out is None:
        return
    for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.add_scalar(name, value, step)
    out.flush()
