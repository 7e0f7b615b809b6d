"""Checkpoints: tensors in safetensors (no pickle), everything else in JSON next to them.

Layout: RUN_DIR/checkpoints/step-00001000/{weights.safetensors, state.json} plus RUN_DIR/checkpoints/latest
naming the newest. A checkpoint is written into a hidden folder, flushed to disk, renamed into place, and
only then does `latest` move to it and are older ones deleted: the folder `latest` names is never touched
before its successor is complete and durable. A step that is already saved is not saved again.

Each state.json records the sha256 of its tensors, and loading checks it. The last KEEP complete checkpoints
are kept, so a corrupt or truncated newest one (a flipped byte, a full disk) falls back to the one before,
with one warning line, and is never carried forward. Pruning deletes only folders diffkit named (step-NNNNNNNN)
and wrote (a state.json with a step): a user's `step-00000020-good-backup` copy is left alone.
"""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from rich.markup import escape
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes, save_file

from diffkit.atomic import fsync_path, refuse_link, reported_writes, write_text
from diffkit.errors import DiffkitError

KEEP = 2  # complete checkpoints kept: the newest and the one a corrupt newest falls back to
OWN_NAME = re.compile(r"\.?(tmp-)?step-\d{8}")  # the names diffkit gives its checkpoint folders


def save_checkpoint(run_dir, step, tensors, state, keep=KEEP, pinned=()):
    """Save one step; prune to the newest `keep` complete checkpoints and those of the `pinned` steps."""
    folder = Path(run_dir) / "checkpoints"
    refuse_link(folder, "checkpoints")
    final, tmp = folder / f"step-{step:08d}", folder / f".tmp-step-{step:08d}"
    if not _complete(final):  # a second save of the same step: the first one stands
        needed = sum(t.numel() * t.element_size() for t in tensors.values())
        try:
            with reported_writes(final, needed):
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / "weights.safetensors",
                          metadata={"step": str(step)})
                state = {**state, "tensors_sha256": tensors_sha256(tensors)}
                (tmp / "state.json").write_text(json.dumps(state, indent=2, allow_nan=False))  # last: marks it complete
                for path in (tmp / "weights.safetensors", tmp / "state.json", tmp):
                    fsync_path(path)
        except DiffkitError:
            shutil.rmtree(tmp, ignore_errors=True)  # the half-written save; the last complete checkpoint stands
            raise
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover of a crashed save, never `latest`
        os.replace(tmp, final)
        fsync_path(folder)
    if _named_by_latest(folder) != final:
        write_text(folder / "latest", final.name)
    complete = [p for p in _complete_checkpoints(run_dir) if not p.name.startswith(".")]
    kept = {final, *complete[:keep], *[p for p in complete if int(p.name.rsplit("-", 1)[-1]) in pinned]}
    for old in folder.iterdir():
        if old not in kept and OWN_NAME.fullmatch(old.name) and old.is_dir() and not old.is_symlink() \
                and (old.name.startswith(".") or _complete(old)):
            shutil.rmtree(old, ignore_errors=True)
    return final


def tensors_sha256(tensors):
    """One hash of named tensors (weights, a fitted prior), independent of their device and of dict order."""
    h = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _named_by_latest(folder):
    """The checkpoint folder that `latest` names, or None when there is no `latest`; a `latest` that does not
    hold one of diffkit's folder names (garbage, say) names `(unreadable)`, which is never complete."""
    latest = folder / "latest"
    if not latest.is_file():
        return None
    try:
        name = latest.read_text().strip()
    except (OSError, UnicodeDecodeError):
        name = ""
    return folder / (name if OWN_NAME.fullmatch(name) else "(unreadable)")


def _complete(path):
    """Whether a checkpoint folder holds its weights and a readable state.json (written last)."""
    try:
        return (path / "weights.safetensors").is_file() and "step" in json.loads((path / "state.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def has_checkpoint(run_dir):
    return (Path(run_dir) / "checkpoints" / "latest").is_file() or bool(_complete_checkpoints(run_dir))


def _complete_checkpoints(run_dir):
    """Complete checkpoint folders (renamed or not), newest step first."""
    folder = Path(run_dir) / "checkpoints"
    found = [p for p in folder.glob("*step-*") if OWN_NAME.fullmatch(p.name) and _complete(p)]
    return sorted(found, key=lambda p: (int(p.name.rsplit("-", 1)[-1]), not p.name.startswith(".")), reverse=True)


def read_state(run_dir):
    """The state.json of a run's newest complete checkpoint (no tensors loaded), or None."""
    named = _named_by_latest(Path(run_dir) / "checkpoints")
    path = named if named is not None and _complete(named) else next(iter(_complete_checkpoints(run_dir)), None)
    return json.loads((path / "state.json").read_text()) if path is not None else None


def read_tensors(path):
    """The tensors of a safetensors file, read into memory. safetensors' load_file maps the file instead, and a
    mapped file rewritten in place while its tensors are in use (`cp` over it, a cache repaired by another
    process) kills the process with SIGBUS."""
    return load_bytes(Path(path).read_bytes())


def _read(path):
    try:
        state = json.loads((path / "state.json").read_text())
        tensors = read_tensors(path / "weights.safetensors")
    except (OSError, ValueError, SafetensorError) as exc:
        raise DiffkitError(f"unreadable checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(state, dict) or "config" not in state or not isinstance(state.get("step"), int) \
            or isinstance(state.get("step"), bool) or not isinstance(state["config"], dict):
        raise DiffkitError(f"unreadable checkpoint {path}: state.json lacks a config or an integer step")
    if "tensors_sha256" in state and tensors_sha256(tensors) != state["tensors_sha256"]:
        raise DiffkitError(f"corrupt checkpoint {path}: its tensors do not match the sha256 recorded when it was "
                           f"saved")
    return tensors, state


def load_checkpoint(run_dir, warn=None, step=None):
    """(tensors, state) of the newest checkpoint in run_dir (of `step`, when given), or a one-line error.

    If `latest` names nothing readable, the newest complete checkpoint is used and `warn(line)` says so."""
    folder = Path(run_dir) / "checkpoints"
    if not Path(run_dir).is_dir():
        raise DiffkitError(f"{run_dir} is not a run directory (train one with `diffkit train --out {run_dir}`)")
    if step is not None:
        if not _complete(folder / f"step-{step:08d}"):
            kept = ", ".join(p.name.rsplit("-", 1)[-1].lstrip("0") for p in _complete_checkpoints(run_dir)) or "none"
            raise DiffkitError(f"{run_dir} holds no checkpoint of step {step} (kept steps: {kept}); train with "
                               f"keep_steps = [{step}] to keep it")
        return _read(folder / f"step-{step:08d}")
    named = _named_by_latest(folder)
    candidates = _complete_checkpoints(run_dir)
    if named is not None and _complete(named):
        candidates = [named] + [c for c in candidates if c != named]
    if not candidates:
        if named is not None:
            return _read(named)  # the one-line reason it is unreadable
        raise DiffkitError(f"no checkpoint in {run_dir}: expected {folder}/latest from `diffkit train`")
    problem = None if named is not None and candidates[0] == named else \
        f"{folder}/latest names {named.name if named else 'nothing'}, which is missing or incomplete"
    for candidate in candidates:
        try:
            tensors, state = _read(candidate)
        except DiffkitError as exc:
            problem = exc.message
            continue
        if problem:
            (warn or _warn)(f"Warning: {problem}; using {candidate.name}, the newest complete checkpoint that "
                            f"reads and verifies")
        return tensors, state
    raise DiffkitError(problem)


def _warn(line):
    from rich.console import Console

    Console(stderr=True).print(escape(line), highlight=False, soft_wrap=True)


def split_prefix(tensors, prefix):
    """{key without prefix: tensor} for the keys that start with `prefix.`."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


# The layout of a checkpoint's tensors, named here alone: "network.*" (the raw weights), "ema.*" (the weights that
# sample), "prior.*" (the degradation's fitted prior) and "optimizer.*" (see flatten_optimizer).
PARTS = ("network", "ema", "prior")


def pack(network, ema, prior, optimizer=None):
    """One flat {name: CPU tensor} dict for save_checkpoint from the state dicts of each part (optimizer: the
    tensors flatten_optimizer returned)."""
    parts = {"network": network, "ema": ema, "prior": prior}
    flat = {f"{part}.{k}": v.detach().cpu() for part, values in parts.items() for k, v in values.items()}
    return {**flat, **{k: v.detach().cpu() for k, v in (optimizer or {}).items()}}


def unpack(tensors):
    """{"network" | "ema" | "prior": state dict} of a checkpoint's tensors (the optimizer's: unflatten_optimizer)."""
    return {part: split_prefix(tensors, part) for part in PARTS}


def sampling_sha256(ema, prior):
    """The hash of what decides a seed's samples: the EMA weights and the fitted prior."""
    return tensors_sha256({**{f"ema.{k}": v for k, v in ema.items()}, **{f"prior.{k}": v for k, v in prior.items()}})


def flatten_optimizer(state_dict):
    """torch optimizer state -> (tensors for safetensors, JSON-ready rest)."""
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if hasattr(value, "shape"):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars,
                     "tensors": {str(i): sorted(k for k, v in values.items() if hasattr(v, "shape"))
                                 for i, values in state_dict["state"].items()}}


def unflatten_optimizer(tensors, rest):
    """flatten_optimizer's inverse. A state that lacks a tensor its state.json says was saved (deleted from the
    file, say) is a KeyError naming it, not a silent restart of the optimizer; older checkpoints, which did not
    list their tensors, load as they are."""
    state = {}
    for key, value in split_prefix(tensors, "optimizer").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in rest["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    missing = [f"{i}.{name}" for i, names in rest.get("tensors", {}).items() for name in names
               if name not in state.get(int(i), {})]
    if missing:
        raise KeyError(f"the optimizer state lacks {len(missing)} saved tensor(s), e.g. optimizer.{missing[0]}")
    return {"state": state, "param_groups": rest["param_groups"]}
