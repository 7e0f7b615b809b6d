"""Checkpoints: tensors in safetensors (no pickle), everything else in JSON next to them.

Layout: RUN_DIR/checkpoints/step-00001000/{weights.safetensors, state.json} plus RUN_DIR/checkpoints/latest
naming the newest. A checkpoint is written into a hidden folder, renamed into place, and only then
does `latest` move to it, so a killed run always leaves the previous checkpoint intact.
"""

import json
import os
import shutil
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffkit.atomic import write_text
from diffkit.errors import DiffkitError


def save_checkpoint(run_dir, step, tensors, state):
    folder = Path(run_dir) / "checkpoints"
    final, tmp = folder / f"step-{step:08d}", folder / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / "weights.safetensors", metadata={"step": str(step)})
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_text(folder / "latest", final.name)
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def has_checkpoint(run_dir):
    return (Path(run_dir) / "checkpoints" / "latest").is_file()


def load_checkpoint(run_dir):
    """(tensors, state) of the newest checkpoint in run_dir, or a one-line error."""
    folder = Path(run_dir) / "checkpoints"
    if not Path(run_dir).is_dir():
        raise DiffkitError(f"{run_dir} is not a run directory (train one with `diffkit train --out {run_dir}`)")
    if not has_checkpoint(run_dir):
        raise DiffkitError(f"no checkpoint in {run_dir}: expected {folder}/latest from `diffkit train`")
    path = folder / (folder / "latest").read_text().strip()
    try:
        state = json.loads((path / "state.json").read_text())
        tensors = load_file(path / "weights.safetensors")
    except (OSError, ValueError, SafetensorError) as exc:
        raise DiffkitError(f"unreadable checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(state, dict) or "config" not in state or "step" not in state:
        raise DiffkitError(f"unreadable checkpoint {path}: state.json lacks config or step")
    return tensors, state


def split_prefix(tensors, prefix):
    """{key without prefix: tensor} for the keys that start with `prefix.`."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def flatten_optimizer(state_dict):
    """torch optimizer state -> (tensors for safetensors, JSON-ready rest)."""
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if hasattr(value, "shape"):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors, rest):
    state = {}
    for key, value in split_prefix(tensors, "optimizer").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in rest["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}
